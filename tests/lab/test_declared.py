"""What the YAML declares for a request shape (the expectation side of every lab check)."""

from __future__ import annotations

import pytest
from istio_yaml import destination_rule

from loadgen.lab import declared as decl
from loadgen.lab.istio import loads

VS = (
    destination_rule("httpbin", "v1", "v2")
    + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - name: query
    match: [{queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: httpbin, subset: v2}}]
  - name: present
    match: [{queryParams: {trace: {regex: "*"}}}]
    route: [{destination: {host: httpbin, subset: v2}}]
  - name: nocase
    match: [{uri: {prefix: /Admin}, ignoreUriCase: true}]
    directResponse: {status: 403}
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new}
  - name: rest
    route: [{destination: {host: httpbin, subset: v1}}]
"""
)


def _route(path: str, headers: dict[str, str] | None = None) -> str:
    r = decl.declared_route(loads(VS), "httpbin", path, headers or {})
    assert not isinstance(r, bool) and r is not None
    return r.name


def test_query_parameters_are_part_of_the_match() -> None:
    assert _route("/get?debug=1") == "query"
    assert _route("/get?debug=2") == "rest"
    assert _route("/get?x=1&trace=") == "present"  # present match, even when empty
    assert _route("/get") == "rest"


def test_ignore_uri_case_folds_both_sides() -> None:
    assert _route("/admin/users") == "nocase"
    assert _route("/ADMIN") == "nocase"
    assert _route("/adm") == "rest"


def test_envoy_answers_and_splits() -> None:
    spec = loads(VS)
    assert decl.envoy_answer(decl.declared_route(spec, "httpbin", "/old", {})) == ("redirect 301", 301)
    assert decl.envoy_answer(decl.declared_route(spec, "httpbin", "/Admin", {})) == (
        "direct response 403",
        403,
    )
    assert decl.envoy_answer(decl.declared_route(spec, "httpbin", "/get", {})) is None
    assert decl.expected_split(spec, "httpbin", "/old", {}) == {}  # no cluster sees it
    assert decl.expected_split(spec, "httpbin", "/get?debug=1", {}) == {
        "outbound|8000|v2|httpbin.default.svc.cluster.local": 1.0
    }


def test_weight_zero_destination_declares_nothing() -> None:
    spec = loads(
        VS.replace(
            "  - name: rest\n    route: [{destination: {host: httpbin, subset: v1}}]\n",
            "  - name: rest\n    route:\n"
            "    - {destination: {host: httpbin, subset: v1}, weight: 100}\n"
            "    - {destination: {host: httpbin, subset: v2}, weight: 0}\n",
        )
    )
    assert decl.expected_split(spec, "httpbin", "/get", {}) == {
        "outbound|8000|v1|httpbin.default.svc.cluster.local": 1.0
    }


def test_weights_are_relative() -> None:
    # Istio >= 1.15: weights need not sum to 100; a destination gets weight / sum of weights
    spec = loads(
        VS.replace(
            "  - name: rest\n    route: [{destination: {host: httpbin, subset: v1}}]\n",
            "  - name: rest\n    route:\n"
            "    - {destination: {host: httpbin, subset: v1}, weight: 800}\n"
            "    - {destination: {host: httpbin, subset: v2}, weight: 100}\n",
        )
    )
    split = decl.expected_split(spec, "httpbin", "/get", {})
    assert split == pytest.approx(
        {
            "outbound|8000|v1|httpbin.default.svc.cluster.local": 8 / 9,
            "outbound|8000|v2|httpbin.default.svc.cluster.local": 1 / 9,
        }
    )
    # accepted, but said: a sum other than 100 is often a typo, and older Istio refused it
    (warning,) = [w for w in spec.warnings if "weights sum" in w]
    assert "http[4].route: weights sum to 900, not 100: read as relative weights" in warning
    assert "(v1 88.9 %, v2 11.1 %)" in warning
    assert not any("weights sum" in w for w in loads(VS).warnings)
