"""Delegate VirtualServices merged into their roots as istiod merges them (virtualservice.go)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]
from istio_yaml import destination_rule

from loadgen.errors import UsageError
from loadgen.lab.harness import Lab
from loadgen.lab.istio import load
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
    assert [str(n) for n in m.notes] == [
        "http[0].delegate default/child: 2 of its 4 routes match outside this route's match: "
        "dropped (as istiod does)"
    ]
    assert m.used == {0: ["default/child"]} and m.unused == [] and m.sources == [0]


def test_missing_or_unexported_delegates_drop_only_their_route() -> None:
    docs = _docs(ROOT)
    m = merge_delegates(docs[:1])
    assert merge_delegates(docs[1:]).unused == [0]  # a delegate nobody asks for
    assert len(m.docs[0]["spec"]["http"]) == 1 and "not among the files" in str(m.notes[0])
    private = _docs(ROOT)
    private[1]["metadata"]["namespace"] = "team-a"
    private[1]["spec"]["exportTo"] = ["."]
    private[0]["spec"]["http"][0]["delegate"]["namespace"] = "team-a"
    m = merge_delegates(private)
    assert len(m.docs[0]["spec"]["http"]) == 1 and "not exported to namespace default" in str(m.notes[0])
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


# --------------------------------------------------------------------------- in the lab

LAB_DR = destination_rule("httpbin", "v1", "v2")
LAB_ROOT = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - name: team-a
    match: [{uri: {prefix: /anything/api}, headers: {x-team: {exact: a}}}]
    headers: {request: {set: {x-root: "yes"}}}
    delegate: {name: team-a-routes}
  - route: [{destination: {host: httpbin, subset: v1}}]
"""
LAB_CHILD = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: team-a-routes}
spec:
  http:
  - match: [{uri: {prefix: /anything/api/v2}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: httpbin, subset: v2}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: httpbin, subset: v2}}]
  - route: [{destination: {host: httpbin, subset: v1}}]
"""


def test_lab_reads_delegates_across_files(tmp_path: Path) -> None:
    (tmp_path / "root.yaml").write_text(LAB_ROOT + "---\n" + LAB_DR)
    (tmp_path / "child.yaml").write_text(LAB_CHILD)
    spec = load([str(tmp_path / "root.yaml"), str(tmp_path / "child.yaml")])
    (vs,) = spec.virtual_services
    assert vs.name == "httpbin" and len(vs.http) == 3  # /anything/api/v2, the match-less one, catch-all
    assert any("1 of its 3 routes match outside" in w for w in spec.warnings), spec.warnings
    # a delegate nobody delegates to is ignored, as in Istio, and said so
    alone = load([str(tmp_path / "child.yaml")])
    assert alone.virtual_services == ()
    assert any("no VirtualService delegates to: ignored" in w for w in alone.warnings), alone.warnings
    # an error inside a delegate's route names the delegate
    (tmp_path / "child.yaml").write_text(LAB_CHILD.replace("httpStatus: 418", "httpStatus: 42"))
    with pytest.raises(UsageError, match=r"include those of default/team-a-routes"):
        load([str(tmp_path / "root.yaml"), str(tmp_path / "child.yaml")])


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=5)
    try:
        conn.request("GET", u.path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_delegated_routes_in_traffic_through_envoy(tmp_path: Path) -> None:
    (tmp_path / "root.yaml").write_text(LAB_ROOT + "---\n" + LAB_DR)
    (tmp_path / "child.yaml").write_text(LAB_CHILD)
    lab = Lab([str(tmp_path / "root.yaml"), str(tmp_path / "child.yaml")], None, keep=False)
    try:
        team = {"x-team": "a"}
        # the delegate's own route, under the root's match: its fault
        assert _get(lab.url("httpbin", "/anything/api/v2/x"), team)[0] == 418
        # the delegate's match-less route takes the root's match and the root's header ops
        status, body = _get(lab.url("httpbin", "/anything/api/x"), team)
        assert status == 200 and json.loads(body)["headers"].get("X-Root") == "yes"
        # without the root's header condition nothing of the delegate applies: the catch-all
        for path in ("/anything/api/v2/x", "/anything/api/x"):
            status, body = _get(lab.url("httpbin", path), {})
            assert status == 200 and "X-Root" not in json.loads(body)["headers"]
    finally:
        lab.close()
