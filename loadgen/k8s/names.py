"""Parse and validate loadgen's Kubernetes URLs and object names (RFC 1123); no I/O, no kubernetes.

    k8s://NAMESPACE/(pod|svc|deploy)/NAME:PORT[/PATH]     a target reached through port-forward
    exec://NAMESPACE/(pod|deploy)/NAME[?container=C]      run the load inside that pod
    job://NAMESPACE?replicas=N&image=IMAGE[&start=5s]     run the load as an Indexed Job

What it is not: no lookups (which pod is ready is :mod:`loadgen.k8s.client`'s job).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from loadgen.errors import UsageError

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
KINDS = {
    "pod": "pod",
    "po": "pod",
    "svc": "svc",
    "service": "svc",
    "deploy": "deploy",
    "deployment": "deploy",
}


def check_label(name: str, what: str) -> str:
    """An RFC 1123 label (namespaces, services, containers): ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, ≤ 63."""
    if not name or len(name) > 63 or not _LABEL.match(name):
        raise UsageError(
            f"invalid {what} {name!r}: must be an RFC 1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return name


def check_subdomain(name: str, what: str) -> str:
    """An RFC 1123 subdomain (pods, deployments): dot-separated labels, ≤ 253 characters."""
    if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")):
        raise UsageError(
            f"invalid {what} {name!r}: must be an RFC 1123 subdomain (lower-case letters, digits, '-' "
            "and '.', at most 253 characters)"
        )
    return name


def _check_name(kind: str, name: str) -> str:
    if kind == "svc":
        return check_label(name, "service name")
    return check_subdomain(name, f"{'pod' if kind == 'pod' else 'deployment'} name")


@dataclass(frozen=True)
class ForwardURL:
    """``k8s://NS/KIND/NAME:PORT/PATH``."""

    namespace: str
    kind: str  # pod | svc | deploy
    name: str
    port: int
    path: str  # with the query, at least "/"


@dataclass(frozen=True)
class ExecURL:
    """``exec://NS/(pod|deploy)/NAME[?container=C]``."""

    namespace: str
    kind: str  # pod | deploy
    name: str
    container: str = ""


@dataclass(frozen=True)
class JobURL:
    """``job://NS?replicas=N&image=IMAGE[&start=SECONDS][&timeout=SECONDS]``."""

    namespace: str
    replicas: int
    image: str
    start_s: float = 10.0
    timeout_s: float = 0.0
    service_account: str = ""


def _split_path(url: str, scheme: str, usage: str) -> tuple[str, list[str], dict[str, list[str]]]:
    if not url.startswith(scheme + "://"):
        raise UsageError(f"{url!r} is not a {scheme}:// URL ({usage})")
    rest = url[len(scheme) + 3 :]
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    parts = rest.split("/")
    q = parse_qs(query, keep_blank_values=True)
    return parts[0], parts[1:], q


def parse_forward_url(url: str) -> ForwardURL:
    usage = "expected k8s://NAMESPACE/(pod|svc|deploy)/NAME:PORT/PATH"
    raw = url.strip()
    if not raw.startswith("k8s://"):
        raise UsageError(f"{url!r}: {usage}")
    u = urlsplit(raw)
    segs = (u.netloc + u.path).split("/", 3)
    if len(segs) < 3:
        raise UsageError(f"{url!r}: {usage}")
    ns, kind_raw, name_port = segs[0], segs[1], segs[2]
    path = "/" + (segs[3] if len(segs) > 3 else "")
    if u.query:
        path += "?" + u.query
    kind = KINDS.get(kind_raw.lower())
    if kind is None:
        raise UsageError(f"{url!r}: unknown kind {kind_raw!r}; {usage}")
    if ":" not in name_port:
        raise UsageError(f"{url!r}: no port after the name; {usage}")
    name, port_s = name_port.rsplit(":", 1)
    try:
        port = int(port_s)
    except ValueError:
        raise UsageError(f"{url!r}: port {port_s!r} is not a number; {usage}") from None
    if not 0 < port < 65536:
        raise UsageError(f"{url!r}: port {port} out of range")
    check_label(ns, "namespace")
    _check_name(kind, name)
    return ForwardURL(namespace=ns, kind=kind, name=name, port=port, path=path)


def parse_exec_url(url: str) -> ExecURL:
    usage = "expected exec://NAMESPACE/(pod|deploy)/NAME[?container=C]"
    ns, segs, q = _split_path(url.strip(), "exec", usage)
    if len(segs) != 2:
        raise UsageError(f"{url!r}: {usage}")
    kind = KINDS.get(segs[0].lower())
    if kind not in ("pod", "deploy"):
        raise UsageError(f"{url!r}: kind must be pod or deploy; {usage}")
    unknown = set(q) - {"container"}
    if unknown:
        raise UsageError(f"{url!r}: unknown parameter(s) {', '.join(sorted(unknown))}; {usage}")
    container = q.get("container", [""])[-1]
    check_label(ns, "namespace")
    _check_name(kind, segs[1])
    if container:
        check_label(container, "container name")
    return ExecURL(namespace=ns, kind=kind, name=segs[1], container=container)


def parse_job_url(url: str) -> JobURL:
    usage = "expected job://NAMESPACE?replicas=N&image=IMAGE[&start=SECONDS][&timeout=SECONDS]"
    ns, segs, q = _split_path(url.strip(), "job", usage)
    if segs and any(segs):
        raise UsageError(f"{url!r}: no path expected; {usage}")
    unknown = set(q) - {"replicas", "image", "start", "timeout", "serviceaccount"}
    if unknown:
        raise UsageError(f"{url!r}: unknown parameter(s) {', '.join(sorted(unknown))}; {usage}")
    check_label(ns, "namespace")
    try:
        replicas = int(q.get("replicas", ["1"])[-1])
        start = float(q.get("start", ["10"])[-1].rstrip("s"))
        timeout = float(q.get("timeout", ["0"])[-1].rstrip("s"))
    except ValueError:
        raise UsageError(f"{url!r}: replicas, start and timeout must be numbers; {usage}") from None
    if not 1 <= replicas <= 1000:
        raise UsageError(f"{url!r}: replicas must be 1..1000")
    image = q.get("image", [""])[-1]
    if not image or any(c.isspace() for c in image):
        raise UsageError(f"{url!r}: image= is required (a container image reference); {usage}")
    if start < 0 or timeout < 0:
        raise UsageError(f"{url!r}: start and timeout must be >= 0")
    sa = q.get("serviceaccount", [""])[-1]
    if sa:
        check_subdomain(sa, "service account")
    return JobURL(
        namespace=ns, replicas=replicas, image=image, start_s=start, timeout_s=timeout, service_account=sa
    )


def split_evenly(total: int, parts: int, index: int) -> int:
    """``total`` split over ``parts``: the remainder goes to the lowest indexes."""
    base, rem = divmod(total, parts)
    return base + (1 if index < rem else 0)
