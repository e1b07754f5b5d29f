"""Delegate VirtualServices merged into their roots as istiod merges them (virtualservice.go)."""

from __future__ import annotations

from typing import Any

import yaml  # type: ignore[import-untyped]

from loadgen.lab.istio_delegate import has_conflict, merge_delegates, merge_route

ROOT = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [httpbin]
  http:
  - name: api
    match: [{uri: {prefix: /api}, headers: {x-team: {exact: a}}}]
    timeout: 2s
    fault: {abort: {httpStatus: 503, percentage: {value: 1}}}
    delegate: {name: child}
  - route: [{destination: {host: httpbin, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /api/v2}, headers: {x-user: {exact: jason}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: httpbin, subset: v2}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: httpbin, subset: v3}}]
  - match: [{uri: {regex: /api/.*}}]
    route: [{destination: {host: httpbin, subset: v3}}]
  - route: [{destination: {host: httpbin, subset: v1}}]
    timeout: 5s
"""


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_delegate_routes_replace_the_delegating_route() -> None:
    m = merge_delegates(_docs(ROOT))
    assert [d["metadata"]["name"] for d in m.docs] == ["root"]  # the delegate document is gone
    http = m.docs[0]["spec"]["http"]
    assert len(http) == 3  # /api/v2, the match-less route; then the root's own catch-all
    v2, rest, last = http
    # the match: the delegate's uri, the root's and the delegate's headers together
    both = {"x-team": {"exact": "a"}, "x-user": {"exact": "jason"}}
    assert v2["match"] == [{"uri": {"prefix": "/api/v2"}, "headers": both}]
    assert v2["name"] == "api-v2"
    assert v2["fault"]["abort"]["httpStatus"] == 418  # its own fault wins
    assert v2["timeout"] == "2s"  # the root's timeout fills the gap
    assert "delegate" not in v2
    # a delegate route without a match takes the root's match; its own timeout stays
    assert rest["match"] == [{"uri": {"prefix": "/api"}, "headers": {"x-team": {"exact": "a"}}}]
    assert rest["timeout"] == "5s" and rest["fault"]["abort"]["httpStatus"] == 503 and rest["name"] == "api"
    assert last == {"route": [{"destination": {"host": "httpbin", "subset": "v1"}}]}
    # /other is outside /api, and a regex never narrows a prefix: both dropped, and said so
    assert len(m.notes) == 1 and "2 of its 4 routes" in m.notes[0] and "default/child" in m.notes[0]


def test_missing_or_unexported_delegates_drop_only_their_route() -> None:
    docs = _docs(ROOT)
    m = merge_delegates(docs[:1])
    assert len(m.docs[0]["spec"]["http"]) == 1 and "not among the files" in m.notes[0]
    private = _docs(ROOT)
    private[1]["metadata"]["namespace"] = "team-a"
    private[1]["spec"]["exportTo"] = ["."]
    private[0]["spec"]["http"][0]["delegate"]["namespace"] = "team-a"
    m = merge_delegates(private)
    assert len(m.docs[0]["spec"]["http"]) == 1 and "not exported to namespace default" in m.notes[0]
    private[1]["spec"]["exportTo"] = ["default"]
    assert len(merge_delegates(private).docs[0]["spec"]["http"]) == 3


def test_match_conflicts_as_istio_decides_them() -> None:
    def c(root: dict[str, Any], leaf: dict[str, Any]) -> bool:
        return has_conflict(root, leaf)

    assert not c({"uri": {"prefix": "/a"}}, {"uri": {"prefix": "/a/b"}})
    assert c({"uri": {"prefix": "/a/b"}}, {"uri": {"prefix": "/a"}})
    assert not c({"uri": {"prefix": "/a"}}, {"uri": {"exact": "/a/x"}})
    assert c({"uri": {"exact": "/a"}}, {"uri": {"prefix": "/a"}})
    assert not c({"uri": {"exact": "/a"}}, {"uri": {"exact": "/a"}})
    assert c({"uri": {"regex": "/a.*"}}, {"uri": {"regex": "/a.*"}})
    assert not c({}, {"uri": {"regex": "/a.*"}})  # nothing on the root side: anything narrows it
    assert c({"headers": {"x": {"exact": "1"}}}, {"headers": {"x": {"exact": "2"}}})
    assert not c({"headers": {"x": {"exact": "1"}}}, {"headers": {"y": {"exact": "2"}}})
    assert c({"ignoreUriCase": True}, {})
    assert c({"port": 80}, {"port": 8080}) and not c({"port": 80}, {})
    assert c({"sourceLabels": {"app": "a"}}, {"sourceLabels": {"app": "b"}})
    assert c({"gateways": ["g1"]}, {"gateways": ["g1", "g2"]})


def test_a_route_with_several_root_matches_multiplies() -> None:
    root = {"match": [{"uri": {"prefix": "/a"}}, {"uri": {"prefix": "/b"}}], "retries": {"attempts": 1}}
    sub = {"match": [{"method": {"exact": "GET"}}], "route": [{"destination": {"host": "x"}}]}
    merged = merge_route(root, sub)
    assert merged is not None
    assert merged["match"] == [
        {"method": {"exact": "GET"}, "uri": {"prefix": "/a"}},
        {"method": {"exact": "GET"}, "uri": {"prefix": "/b"}},
    ]
    assert merged["retries"] == {"attempts": 1}
