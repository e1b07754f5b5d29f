"""Any YAML value in any field of a VirtualService route or a DestinationRule load balancer either
loads and renders, or is refused with a UsageError naming the field: never another exception
(a traceback would reach the user)."""

from __future__ import annotations

from typing import Any

import yaml  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.errors import UsageError
from loadgen.lab import render
from loadgen.lab.istio import loads

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", "/", "/x", "a b", "50%", "%%", "%HOSTNAME%", "host", ":path", "v1", "1s", "-1s", "x" * 300]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "uri",
                    "name",
                    "value",
                    "set",
                    "add",
                    "remove",
                    "string",
                    "bytes",
                    "request",
                    "response",
                    "match",
                    "rewrite",
                    "status",
                    "port",
                ]
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)
ROUTE_KEYS = st.sampled_from(
    ["headers", "rewrite", "redirect", "directResponse", "fault", "timeout", "retries"]
)
LB_KEYS = st.sampled_from(
    [
        "httpHeaderName",
        "httpCookie",
        "useSourceIp",
        "httpQueryParameterName",
        "ringHash",
        "maglev",
        "minimumRingSize",
    ]
)

DR = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "httpbin"},
    "spec": {"host": "httpbin", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
}


def _render(text: str) -> None:
    try:
        spec = loads(text, "fuzz.yaml")
    except UsageError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    ups = {
        (s.host, sub): (("127.0.0.1", 1),)
        for s in spec.services
        for sub in ("", *(x.name for x in s.subsets))
    }
    listeners = {s.host: 20000 + i for i, s in enumerate(spec.services)}
    render.render_yaml(spec, render.Ports(admin=1, listeners=listeners, upstreams=ups))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ROUTE_KEYS, VALUES, max_size=3), st.booleans())
def test_any_route_fields(fields: dict[str, Any], with_route: bool) -> None:
    route: dict[str, Any] = dict(fields)
    if with_route:
        route["route"] = [{"destination": {"host": "httpbin", "subset": "v1"}}]
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "httpbin"},
        "spec": {"hosts": ["httpbin"], "http": [route]},
    }
    _render(yaml.safe_dump_all([DR, vs]))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(LB_KEYS, VALUES, max_size=3))
def test_any_consistent_hash(ch: dict[str, Any]) -> None:
    dr = {**DR, "spec": {**DR["spec"], "trafficPolicy": {"loadBalancer": {"consistentHash": ch}}}}
    _render(yaml.safe_dump(dr))
