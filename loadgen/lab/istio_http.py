"""The request-shaping parts of a VirtualService ``http`` route, read as Istio reads them:
``headers`` (on the route and on each destination), ``rewrite``, ``redirect`` and
``directResponse``; and a DestinationRule's ``loadBalancer.consistentHash`` (which becomes a
route's hash policy). What they become in Envoy is :mod:`loadgen.lab.render`'s business (it follows
Istio's ``route.go``: ``TranslateHeadersOperations``, ``ApplyRedirect``, ``ApplyDirectResponse``).

Istio's rules kept here (its validation, then its translation): ``host``/``:authority`` in
``headers.request.set``/``add`` is not a header operation but a host rewrite, and the authority
may be given once (there, or in ``rewrite.authority``); other pseudo-headers and ``host`` are
rejected; a literal ``%`` in a header value must be ``%%`` (Envoy reads ``%NAME%`` as a variable);
``redirect`` must change something, ``redirectCode`` is 301 (default), 302, 303, 307 or 308,
``port`` and ``derivePort`` exclude each other; a route has one of ``route``, ``redirect`` and
``directResponse``, and ``fault`` or ``rewrite`` cannot go with the last two; direct-response
bodies stay under 1 MiB; ``uriRegexRewrite`` needs ``match`` and ``rewrite``; ``consistentHash``
has exactly one hash key, Maglev a prime ``tableSize`` below 5000011, and the legacy
``minimumRingSize`` excludes ``ringHash``/``maglev``.

Stricter than Istio, on purpose: header names must be HTTP tokens, ``rewrite.uri`` and
``redirect.uri`` must start with ``/``, ``useSourceIp: false`` is an error (it hashes nothing),
and redirect codes Istio would drop with a warning are errors. ``derivePort: FROM_REQUEST_PORT``
redirects to the service's port, the port the client's sidecar listens on in a mesh.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from loadgen.lab import istio_fields as fr
from loadgen.lab.istio_fields import Ctx, join
from loadgen.lab.model import MAX_DIRECT_BODY, ConsistentHash, DirectResponse, HeaderOps, Redirect, Rewrite

REDIRECT_CODES = (301, 302, 303, 307, 308)
DERIVE_PORTS = ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _is_authority(name: str) -> bool:
    return name.lower() in ("host", ":authority")


_PERCENT_RE = re.compile(r"%%|%[A-Z0-9_]+(\([^)]*\))?(:[0-9]+)?%")


def _check_value(ctx: Ctx, path: str, text: str) -> None:
    if _BAD_VALUE_RE.search(text):
        raise ctx.error(path, "header values cannot contain control characters")
    # Envoy reads %NAME% as a variable: a lone % must be written %%
    if "%" in _PERCENT_RE.sub("", text):
        raise ctx.error(
            path, f"{text!r}: a literal '%' must be written '%%' (Envoy reads %NAME% as a variable)"
        )


def _check_name(ctx: Ctx, path: str, name: str, *, authority_ok: bool) -> None:
    """Istio's header-operation name rules: no pseudo-headers, no ``host``, except that a request
    ``set``/``add`` of ``host``/``:authority`` is an authority rewrite."""
    if authority_ok and _is_authority(name):
        return
    if name.startswith(":"):
        raise ctx.error(path, f"{name!r}: header cannot have ':' prefix")
    if name.lower() == "host":
        raise ctx.error(path, "cannot set Host header")
    if not _HEADER_NAME_RE.match(name):
        raise ctx.error(path, f"{name!r} is not a valid header name")


def _header_map(ctx: Ctx, v: object, path: str, *, authority_ok: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in fr.read_mapping(ctx, v, path).items():
        np = join(path, name)
        _check_name(ctx, np, name, authority_ok=authority_ok)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ctx.error(np, f"expected a string value, got {fr.typename(value)}")
        text = str(value)
        _check_value(ctx, np, text)
        out.append((name, text))
    return out


def _header_names(ctx: Ctx, v: object, path: str) -> list[str]:
    names: list[str] = []
    for i, item in enumerate(fr.read_list(ctx, v, path)):
        name = fr.read_str(ctx, item, join(path, i))
        _check_name(ctx, join(path, i), name, authority_ok=False)
        names.append(name)
    return names


def header_ops(ctx: Ctx, v: object, path: str, *, rewrite_authority: str = "") -> HeaderOps:
    """``headers: {request: {set, add, remove}, response: {set, add, remove}}``.

    ``rewrite_authority``: the route's ``rewrite.authority``; the authority may be given once in
    all (Istio: "authority header cannot be set multiple times")."""
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"request", "response"})
    parts: dict[str, dict[str, Any]] = {}
    for side in ("request", "response"):
        sp = join(path, side)
        sm = fr.read_mapping(ctx, m[side], sp) if m.get(side) is not None else {}
        fr.check_fields(ctx, sm, sp, {"set", "add", "remove"})
        ok = side == "request"
        got: dict[str, Any] = {
            "set": _header_map(ctx, sm["set"], join(sp, "set"), authority_ok=ok)
            if sm.get("set") is not None
            else [],
            "add": _header_map(ctx, sm["add"], join(sp, "add"), authority_ok=ok)
            if sm.get("add") is not None
            else [],
            "remove": _header_names(ctx, sm["remove"], join(sp, "remove"))
            if sm.get("remove") is not None
            else [],
        }
        parts[side] = got
    req, resp = parts["request"], parts["response"]
    authority = rewrite_authority
    for op in ("set", "add"):
        for name, value in req[op]:
            if _is_authority(name):
                if authority:
                    raise ctx.error(
                        join(join(join(path, "request"), op), name),
                        f"authority header cannot be set multiple times: have {authority!r}, "
                        f"attempting to set {value!r}",
                    )
                authority = value

    def keep(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        # Istio sorts each list by name (its maps have no order)
        return tuple(sorted((n, val) for n, val in pairs if not _is_authority(n)))

    return HeaderOps(
        request_set=keep(req["set"]),
        request_add=keep(req["add"]),
        request_remove=tuple(req["remove"]),
        response_set=keep(resp["set"]),
        response_add=keep(resp["add"]),
        response_remove=tuple(resp["remove"]),
        authority="" if authority == rewrite_authority else authority,
    )


def rewrite(ctx: Ctx, v: object, path: str) -> Rewrite:
    """``rewrite: {uri | uriRegexRewrite: {match, rewrite}, authority}``."""
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"uri", "authority", "uriRegexRewrite"})
    uri = fr.read_str(ctx, m.get("uri"), join(path, "uri"), required=False)
    authority = fr.read_str(ctx, m.get("authority"), join(path, "authority"), required=False)
    regex: tuple[str, str] | None = None
    if m.get("uriRegexRewrite") is not None:
        if uri:
            raise ctx.error(join(path, "uriRegexRewrite"), "give uri or uriRegexRewrite, not both")
        rp = join(path, "uriRegexRewrite")
        rm = fr.read_mapping(ctx, m["uriRegexRewrite"], rp)
        fr.check_fields(ctx, rm, rp, {"match", "rewrite"})
        pattern = fr.read_str(ctx, rm.get("match"), join(rp, "match"))
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ctx.error(join(rp, "match"), f"invalid regex {pattern!r}: {exc}") from None
        if rm.get("rewrite") is None:
            raise ctx.error(join(rp, "rewrite"), "required (uriRegexRewrite needs both match and rewrite)")
        regex = (pattern, fr.read_str(ctx, rm["rewrite"], join(rp, "rewrite"), required=False))
    if uri and not uri.startswith("/"):
        raise ctx.error(join(path, "uri"), f"{uri!r} must start with '/'")
    if not (uri or authority or regex):
        raise ctx.error(path, "give uri, uriRegexRewrite or authority")
    return Rewrite(uri, regex, authority)


def redirect(ctx: Ctx, v: object, path: str) -> Redirect:
    """``redirect: {uri, authority, scheme, port | derivePort, redirectCode}``."""
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"uri", "authority", "scheme", "port", "derivePort", "redirectCode"})
    uri = fr.read_str(ctx, m.get("uri"), join(path, "uri"), required=False)
    if uri and not uri.startswith("/"):
        raise ctx.error(join(path, "uri"), f"{uri!r} must start with '/'")
    authority = fr.read_str(ctx, m.get("authority"), join(path, "authority"), required=False)
    scheme = fr.read_str(ctx, m.get("scheme"), join(path, "scheme"), required=False)
    if scheme and scheme not in ("http", "https"):
        raise ctx.error(join(path, "scheme"), f"{scheme!r}: use http or https")
    if m.get("port") is not None and m.get("derivePort") is not None:
        raise ctx.error(join(path, "derivePort"), "give port or derivePort, not both")
    port = fr.read_int(ctx, m["port"], join(path, "port"), 1, 65535) if m.get("port") is not None else None
    derive = fr.read_str(ctx, m.get("derivePort"), join(path, "derivePort"), required=False)
    if derive and derive not in DERIVE_PORTS:
        raise ctx.error(join(path, "derivePort"), f"{derive!r}: use {' or '.join(DERIVE_PORTS)}")
    if not (uri or authority or scheme or port is not None or derive):
        raise ctx.error(path, "redirect must specify uri, authority, scheme or port")
    code = 301
    if m.get("redirectCode") is not None:
        code = fr.read_int(ctx, m["redirectCode"], join(path, "redirectCode"), 0, 999) or 301
        if code not in REDIRECT_CODES:
            raise ctx.error(
                join(path, "redirectCode"),
                f"{code} is not a redirect code Istio supports ({', '.join(map(str, REDIRECT_CODES))})",
            )
    return Redirect(uri, authority, scheme, port, derive, code)


def direct_response(ctx: Ctx, v: object, path: str) -> DirectResponse:
    """``directResponse: {status, body: {string | bytes}}`` (``bytes`` is base64, as in the CRD)."""
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"status", "body"})
    if m.get("status") is None:
        raise ctx.error(join(path, "status"), "required")
    status = fr.read_int(ctx, m["status"], join(path, "status"), 200, 599)
    body: bytes | None = None
    as_text = True
    if m.get("body") is not None:
        bp = join(path, "body")
        bm = fr.read_mapping(ctx, m["body"], bp)
        fr.check_fields(ctx, bm, bp, {"string", "bytes"})
        if len(bm) > 1:
            raise ctx.error(bp, "give one of string or bytes")
        if not bm:
            pass  # Istio: no body
        elif "string" in bm:
            body = fr.read_str(ctx, bm["string"], join(bp, "string"), required=False).encode()
        else:
            as_text = False
            raw = fr.read_str(ctx, bm["bytes"], join(bp, "bytes"), required=False)
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ctx.error(join(bp, "bytes"), "not valid base64") from None
        if body is not None and len(body) > MAX_DIRECT_BODY:
            raise ctx.error(bp, f"the body must be less than 1MB ({len(body)} bytes)")
        if body is not None and len(body) > 100 * 1024:
            ctx.warn(bp, f"a {len(body)}-byte body is large (Istio warns above 100 KiB)")
    return DirectResponse(status, body, as_text)


_HASH_KEYS = {
    "httpHeaderName": "header",
    "httpCookie": "cookie",
    "useSourceIp": "source_ip",
    "httpQueryParameterName": "query_parameter",
}


def consistent_hash(ctx: Ctx, v: object, path: str) -> ConsistentHash:
    """``consistentHash``: exactly one hash key; ``ringHash``/``maglev``/legacy ``minimumRingSize``."""
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {*_HASH_KEYS, "ringHash", "maglev", "minimumRingSize"})
    keys = [k for k in _HASH_KEYS if m.get(k) is not None]
    if len(keys) != 1:
        got = f", not {' and '.join(keys)}" if keys else ""
        raise ctx.error(path, f"give one of {', '.join(_HASH_KEYS)}{got}")
    key = keys[0]
    kp = join(path, key)
    name, cookie_path, ttl = "", "", None
    if key == "useSourceIp":
        if not fr.read_bool(ctx, m[key], kp):
            raise ctx.error(kp, "false hashes nothing: give another key, or true")
    elif key == "httpCookie":
        cm = fr.read_mapping(ctx, m[key], kp)
        fr.check_fields(ctx, cm, kp, {"name", "path", "ttl", "attributes"})
        name = fr.read_str(ctx, cm.get("name"), join(kp, "name"))
        cookie_path = fr.read_str(ctx, cm.get("path"), join(kp, "path"), required=False)
        ttl = fr.read_duration(ctx, cm["ttl"], join(kp, "ttl")) if cm.get("ttl") is not None else None
        if cm.get("attributes") is not None:
            ctx.warn(join(kp, "attributes"), "ignored (not modelled by the lab)")
    else:
        name = fr.read_str(ctx, m[key], kp)
    if m.get("ringHash") is not None and m.get("maglev") is not None:
        raise ctx.error(path, "give ringHash or maglev, not both")
    if m.get("minimumRingSize") and (m.get("ringHash") is not None or m.get("maglev") is not None):
        raise ctx.error(path, "only one of minimumRingSize or maglev/ringHash can be specified")
    if m.get("minimumRingSize") is not None:
        ctx.warn(join(path, "minimumRingSize"), "deprecated (use ringHash.minimumRingSize)")
    algorithm, size = "ring_hash", 0
    if m.get("maglev") is not None:
        mp = join(path, "maglev")
        mm = fr.read_mapping(ctx, m["maglev"], mp)
        fr.check_fields(ctx, mm, mp, {"tableSize"})
        algorithm = "maglev"
        if mm.get("tableSize") is None:
            raise ctx.error(join(mp, "tableSize"), "required (a prime below 5000011)")
        size = fr.read_int(ctx, mm["tableSize"], join(mp, "tableSize"), 1, 5_000_010)
        if not _is_prime(size):
            raise ctx.error(join(mp, "tableSize"), f"{size} is not a prime number")
    elif m.get("ringHash") is not None:
        rp = join(path, "ringHash")
        rm = fr.read_mapping(ctx, m["ringHash"], rp)
        fr.check_fields(ctx, rm, rp, {"minimumRingSize"})
        size = fr.read_int(ctx, rm.get("minimumRingSize", 0), join(rp, "minimumRingSize"), 0, 8_388_608)
    else:
        # Istio: neither given means a ring hash with the legacy minimumRingSize, else 1024
        size = (
            fr.read_int(ctx, m.get("minimumRingSize", 0), join(path, "minimumRingSize"), 0, 8_388_608) or 1024
        )
    return ConsistentHash(_HASH_KEYS[key], name, cookie_path, ttl, algorithm, size)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True
