"""Envoy route config for the request-shaping parts of an http route, as Istio's ``route.go``
writes it: header operations (``request_headers_to_add`` with ``OVERWRITE_IF_EXISTS_OR_ADD`` for
``set`` and ``APPEND_IF_EXISTS_OR_ADD`` for ``add``, ``*_headers_to_remove``), ``host_rewrite_literal``
for an authority, ``prefix_rewrite``/``regex_rewrite``, the ``redirect`` action and the
``direct_response`` action; and for a DestinationRule's ``consistentHash`` the cluster's
``RING_HASH``/``MAGLEV`` policy and the route's ``hash_policy``. Pure functions over
:mod:`loadgen.lab.model`."""

from __future__ import annotations

import base64
from typing import Any

from loadgen.lab.model import ConsistentHash, DirectResponse, HeaderOps, Redirect, Rewrite


def fmt_duration(ns: int) -> str:
    """Nanoseconds → an Envoy/protobuf duration string: ``7s``, ``0.5s``, ``0.000001s``."""
    sec, frac = divmod(ns, 10**9)
    if not frac:
        return f"{sec}s"
    return f"{sec}.{frac:09d}".rstrip("0") + "s"


REDIRECT_CODE_NAMES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}


def _adds(pairs: tuple[tuple[str, str], ...], action: str) -> list[dict[str, Any]]:
    return [{"header": {"key": k, "value": v}, "append_action": action} for k, v in pairs]


def header_fields(ops: HeaderOps) -> dict[str, Any]:
    """The four header lists of a route (or of a weighted cluster), empty ones left out."""
    out: dict[str, Any] = {}
    req = _adds(ops.request_set, "OVERWRITE_IF_EXISTS_OR_ADD") + _adds(
        ops.request_add, "APPEND_IF_EXISTS_OR_ADD"
    )
    resp = _adds(ops.response_set, "OVERWRITE_IF_EXISTS_OR_ADD") + _adds(
        ops.response_add, "APPEND_IF_EXISTS_OR_ADD"
    )
    if req:
        out["request_headers_to_add"] = req
    if ops.request_remove:
        out["request_headers_to_remove"] = list(ops.request_remove)
    if resp:
        out["response_headers_to_add"] = resp
    if ops.response_remove:
        out["response_headers_to_remove"] = list(ops.response_remove)
    return out


def merge_header_fields(route: dict[str, Any], extra: dict[str, Any]) -> None:
    """Append a single destination's header lists to the route's (Istio's ``processDestination``)."""
    for key, values in extra.items():
        route[key] = [*route.get(key, []), *values]


def rewrite_fields(rw: Rewrite) -> dict[str, Any]:
    """``prefix_rewrite`` or ``regex_rewrite`` of a route action (the authority is set by the caller)."""
    if rw.regex is not None:
        pattern, substitution = rw.regex
        return {"regex_rewrite": {"pattern": {"regex": pattern}, "substitution": substitution}}
    if rw.uri:
        return {"prefix_rewrite": rw.uri}
    return {}


def redirect_action(rd: Redirect, listen_port: int) -> dict[str, Any]:
    """Istio's ``ApplyRedirect`` (sidecar semantics: ``uri`` replaces the whole path)."""
    out: dict[str, Any] = {"response_code": REDIRECT_CODE_NAMES[rd.code]}
    if rd.authority:
        out["host_redirect"] = rd.authority
    if rd.uri:
        out["path_redirect"] = rd.uri
    if rd.scheme:
        out["scheme_redirect"] = rd.scheme
    port = 0
    if rd.port is not None:
        port = rd.port
    elif rd.derive_port == "FROM_REQUEST_PORT":
        port = listen_port
    if rd.port is not None or rd.derive_port:
        scheme = rd.scheme or "http"
        if (port, scheme) in ((80, "http"), (443, "https")):
            port = 0  # no explicit :80 or :443
    if port:
        out["port_redirect"] = port
    return out


def direct_response_action(dr: DirectResponse) -> dict[str, Any]:
    """Istio's ``ApplyDirectResponse``: ``body.string`` inline as a string, ``body.bytes`` as bytes."""
    out: dict[str, Any] = {"status": dr.status}
    if dr.body is not None:
        if dr.as_text:
            out["body"] = {"inline_string": dr.body.decode("utf-8")}
        else:
            out["body"] = {"inline_bytes": base64.b64encode(dr.body).decode("ascii")}
    return out


def hash_lb(ch: ConsistentHash) -> dict[str, Any]:
    """Istio's ``ApplyRingHashLoadBalancer``: the cluster's ``lb_policy`` and its config."""
    if ch.algorithm == "maglev":
        out: dict[str, Any] = {"lb_policy": "MAGLEV"}
        if ch.size:
            out["maglev_lb_config"] = {"table_size": ch.size}
        return out
    out = {"lb_policy": "RING_HASH"}
    if ch.size:
        out["ring_hash_lb_config"] = {"minimum_ring_size": ch.size}
    return out


def hash_policy(ch: ConsistentHash) -> dict[str, Any]:
    """Istio's ``consistentHashToHashPolicy``: one entry of a route action's ``hash_policy``."""
    if ch.key == "header":
        return {"header": {"header_name": ch.name}}
    if ch.key == "query_parameter":
        return {"query_parameter": {"name": ch.name}}
    if ch.key == "source_ip":
        return {"connection_properties": {"source_ip": True}}
    cookie: dict[str, Any] = {"name": ch.name}
    if ch.cookie_ttl_ns is not None:
        cookie["ttl"] = fmt_duration(ch.cookie_ttl_ns)
    if ch.cookie_path:
        cookie["path"] = ch.cookie_path
    return {"cookie": cookie}
