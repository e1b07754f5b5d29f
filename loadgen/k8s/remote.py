"""Run the load inside a pod (``-via exec://``): probe the tool, build its argv, parse its JSON.

What it is: :func:`load_argv` turns :class:`~loadgen.options.LoadOptions` back into the flags of
``loadgen load`` or ``fortio load`` (same spelling; local-only flags such as ``-json FILE``,
``-envoy-admin``, ``-report`` are kept here, not sent); :func:`run_exec` picks a ready pod, probes
``loadgen version`` then ``fortio version`` (argv only; a missing binary is kubelet's
``InternalError``), runs ``<tool> load ... -json - URL`` through exec and turns the JSON (ours:
lossless; fortio's: approximate) into a :class:`~loadgen.results.RunResult`.

What it is not: no rendering or writing (the runner hook does that, as for a local run).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from loadgen.errors import RunError, UsageError
from loadgen.k8s.client import Kube
from loadgen.k8s.names import ExecURL
from loadgen.options import LOAD_FLAGS, LoadOptions
from loadgen.results import RunResult

#: LoadOptions fields that only mean something on this machine (never sent to a pod).
LOCAL_ONLY = frozenset(
    {
        "json_path",
        "auto_save",
        "data_dir",
        "report_path",
        "hdr_out",
        "access_log_file",
        "envoy_admin",
        "envoy_cluster",
        "stats_interval_s",
        "via",
        "kubeconfig",
        "context",
        "keep",
        "url",
        "extra",
    }
)
#: loadgen-only flags fortio does not have.
NOT_FORTIO = frozenset({"engine", "threads", "hdr_out", "quiet"})
ALWAYS = ("connections", "qps")


def _fmt(kind: str, v: Any) -> list[str]:
    if kind == "bool":
        return ["true" if v else "false"]
    if kind == "duration":
        return [f"{float(v)!r}s".replace(".0s", "s")]
    if kind == "percentiles":
        return [",".join(f"{p:g}" for p in v)]
    if kind in ("float", "qps"):
        f = float(v)
        return [str(int(f)) if f.is_integer() else repr(f)]
    return [str(v)]


def load_argv(
    opts: LoadOptions, tool: str = "loadgen", url: str | None = None, json_out: bool = True
) -> list[str]:
    """``[tool, "load", flags..., "-json", "-", URL]`` reproducing ``opts`` (argv, never a shell string)."""
    proto = LoadOptions(url="")
    argv = [tool, "load"]
    names = {f.name for f in fields(LoadOptions)}
    seen: set[str] = set()
    for flag in LOAD_FLAGS:
        dest = flag.dest
        if dest in LOCAL_ONLY or dest in seen or dest not in names:
            continue
        if tool == "fortio" and dest in NOT_FORTIO:
            continue
        v = getattr(opts, dest)
        if dest == "payload":
            seen.add(dest)
            if v:
                try:
                    argv += ["-payload", v.decode("utf-8")]
                except UnicodeDecodeError:
                    raise UsageError(
                        "-via exec: a binary payload cannot be passed on a command line"
                    ) from None
            continue
        if flag.kind == "repeat":
            seen.add(dest)
            for k, val in v:
                argv += [f"-{flag.name}", f"{k}: {val}"]
            continue
        if dest in ("duration_s", "exactly"):
            continue
        if v == getattr(proto, dest) and dest not in ALWAYS:
            continue
        seen.add(dest)
        if flag.kind == "bool":
            argv.append(f"-{flag.name}={_fmt('bool', v)[0]}")
        else:
            argv += [f"-{flag.name}", *_fmt(flag.kind, v)]
    if opts.exactly:
        argv += ["-n", str(opts.exactly)]
    else:
        argv += ["-t", _fmt("duration", opts.duration_s)[0]]
    if json_out:
        argv += ["-json", "-"]
    argv.append(opts.url if url is None else url)
    return argv


def parse_json_output(text: str, where: str) -> RunResult:
    """The result JSON a remote ``load -json -`` printed (stdout may carry other lines first)."""
    start = text.find("{")
    if start < 0:
        raise RunError(f"{where}: no JSON result in the output ({text.strip()[:200]!r})")
    try:
        doc = json.loads(text[start:])
    except ValueError:
        try:
            doc, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError as exc:
            raise RunError(f"{where}: the output is not a JSON result: {exc}") from None
    return RunResult.from_json(doc)


def default_container(pod: Any) -> str:
    ann = (pod.metadata.annotations or {}) if pod.metadata else {}
    if ann.get("kubectl.kubernetes.io/default-container"):
        return str(ann["kubectl.kubernetes.io/default-container"])
    names = [c.name for c in pod.spec.containers]
    app = [n for n in names if n != "istio-proxy"]
    return str((app or names)[0])


def probe_tool(kube: Kube, ns: str, pod: str, container: str) -> str:
    """``loadgen`` or ``fortio``, whichever the container has (loadgen first)."""
    for tool in ("loadgen", "fortio"):
        res = kube.exec(ns, pod, [tool, "version"], container=container, timeout_s=30)
        if res.started and res.rc == 0:
            return tool
    raise UsageError(
        f"pod {ns}/{pod} container {container} has neither loadgen nor fortio on its PATH "
        "(use an image built from the repository's Dockerfile, or fortio/fortio)"
    )


def run_exec(kube: Kube, target: ExecURL, opts: LoadOptions) -> tuple[RunResult, dict[str, Any]]:
    """Run the load in the pod; returns the result and what to record about where it ran."""
    pod = kube.ready_pod(target.namespace, target.kind, target.name)
    pname = pod.metadata.name
    container = target.container or default_container(pod)
    tool = probe_tool(kube, target.namespace, pname, container)
    argv = load_argv(opts, tool)
    budget = (opts.exactly and 3600.0) or (opts.duration_s + opts.timeout_s + 120.0)
    if opts.duration_s <= 0 and not opts.exactly:
        raise UsageError("-via exec needs -t > 0 or -n: a run until interrupted cannot be collected")
    res = kube.exec(target.namespace, pname, argv, container=container, timeout_s=budget)
    where = f"{tool} in pod {target.namespace}/{pname}"
    if not res.started:
        raise RunError(f"{where} could not start: {res.error}")
    if res.rc not in (0, 1) or "{" not in res.stdout:
        tail = "\n".join(res.stderr.strip().splitlines()[-5:])
        raise RunError(f"{where} exited with {res.rc}: {tail[:600]}")
    result = parse_json_output(res.stdout, where)
    info = {
        "Via": f"exec://{target.namespace}/pod/{pname}?container={container}",
        "Tool": tool,
        "Argv": argv,
        "RemoteExit": res.rc,
    }
    return result, info
