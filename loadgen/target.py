"""Targets: parse and validate a URL, resolve its host, and prebuild the request bytes.

The request is built once per run (as fortio's fast client and wrk do) and written as is for
every call. This module does no I/O except name resolution.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from loadgen.errors import ResolveError, UsageError
from loadgen.options import LoadOptions
from loadgen.version import __version__

USER_AGENT = f"loadgen/{__version__}"
SCHEMES = ("http", "https")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token (a method)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (no brackets)
    port: int
    path: str  # path + query, at least "/"
    url: str

    @property
    def host_header(self) -> str:
        default = 80 if self.scheme == "http" else 443
        h = f"[{self.host}]" if ":" in self.host else self.host
        return h if self.port == default else f"{h}:{self.port}"


def parse_url(url: str) -> Target:
    """Validate ``url``; a missing scheme means ``http://`` (as fortio does)."""
    raw = url.strip()
    if not raw:
        raise UsageError("no target URL given")
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"unsupported scheme {scheme!r} in {url!r}: use http:// or https://")
    host = parts.hostname or ""
    if not host:
        raise UsageError(f"invalid URL {url!r}: no host")
    if port is None:
        port = 80 if scheme == "http" else 443
    if not 0 < port < 65536:
        raise UsageError(f"invalid URL {url!r}: port {port} out of range")
    # percent-encode what may not stand in a request line (spaces, non-ASCII as UTF-8), leaving
    # existing %XX escapes and the reserved characters alone: every engine sends the same bytes
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_QUERY_SAFE)
    return Target(scheme=scheme, host=host, port=port, path=path, url=raw)


def resolve(target: Target) -> str:
    """The numeric address to connect to (IPv4 preferred, like fortio's default ``ip4``)."""
    try:
        ipaddress.ip_address(target.host)
        return target.host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"cannot resolve host {target.host!r}: {exc}") from exc
    v4 = [i for i in infos if i[0] == socket.AF_INET]
    chosen = (v4 or infos)[0]
    return str(chosen[4][0])


def method_of(opts: LoadOptions) -> str:
    if opts.method:
        if not _TOKEN.match(opts.method):
            raise UsageError(f"invalid -X {opts.method!r}: a method is one token like GET, POST, PURGE")
        return opts.method.upper()
    return "POST" if (opts.payload or opts.content_type) else "GET"


def request_headers(opts: LoadOptions, target: Target) -> list[tuple[str, str]]:
    """Headers in the order they are sent; ``-H`` overrides defaults case-insensitively.

    ``-H Host:x`` sets the virtual host; ``-H User-Agent:`` (empty) removes the default one.
    """
    user = [(k.strip(), v.strip()) for k, v in opts.headers]
    lower = {k.lower() for k, _ in user}
    hdrs: list[tuple[str, str]] = []
    if "host" not in lower and not opts.http10:  # fortio: HTTP/1.0 sends no Host unless given
        hdrs.append(("Host", target.host_header))
    if "user-agent" not in lower:
        hdrs.append(("User-Agent", USER_AGENT))
    body = opts.payload
    ctype = opts.content_type
    if body or ctype:
        if "content-type" not in lower:
            hdrs.append(("Content-Type", ctype or "application/octet-stream"))
        if "content-length" not in lower:
            hdrs.append(("Content-Length", str(len(body))))
    if not opts.keepalive and "connection" not in lower:
        hdrs.append(("Connection", "close"))
    elif opts.http10 and opts.keepalive and "connection" not in lower:
        hdrs.append(("Connection", "keep-alive"))
    for k, v in user:
        if k.lower() == "user-agent" and not v:
            continue
        hdrs.append((k, v))
    return hdrs


def build_request(opts: LoadOptions, target: Target) -> bytes:
    """The full request bytes written for every call."""
    method = method_of(opts)
    version = "HTTP/1.0" if opts.http10 else "HTTP/1.1"
    lines = [f"{method} {target.path} {version}"]
    for k, v in request_headers(opts, target):
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v or ":" in k:
            raise UsageError(f"invalid header {k!r}: names and values cannot contain line breaks")
        lines.append(f"{k}: {v}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"request line or headers are not latin-1 text: {exc.object[exc.start : exc.end]!r}"
        ) from exc
    return head + opts.payload
