"""VirtualService ``headers``, ``rewrite``, ``redirect`` and ``directResponse``: read as Istio reads
them, rendered as Istio's route.go renders them, and checked in traffic through the lab's real
Envoy in front of httpbin (which echoes the request it got)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from istio_yaml import destination_rule

from loadgen.errors import UsageError
from loadgen.lab import render
from loadgen.lab.harness import Lab
from loadgen.lab.istio import loads
from loadgen.lab.model import HeaderOps, LabSpec, Redirect, Rewrite

DR = destination_rule("httpbin", "v1", "v2")

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - name: moved
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: example.com, redirectCode: 302}
  - name: secure
    match: [{uri: {exact: /secure}}]
    redirect: {scheme: https, port: 8443}
  - name: teapot
    match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: short and stout}}
    headers:
      response:
        set: {x-direct: "yes"}
  - name: api
    match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /anything/, authority: api.internal}
    headers:
      request:
        set: {x-lab: set}
        add: {x-added: a}
        remove: [x-drop]
      response:
        set: {x-resp: r}
        remove: [access-control-allow-credentials]
    route:
    - destination: {host: httpbin, subset: v1}
      headers:
        request:
          set: {x-dest: v1}
  - name: regex
    match: [{uri: {prefix: /re/}}]
    rewrite:
      uriRegexRewrite: {match: "^/re/(.*)$", rewrite: "/anything/\\\\1"}
    route:
    - destination: {host: httpbin, subset: v2}
  - route:
    - destination: {host: httpbin, subset: v1}
      weight: 50
      headers: {request: {set: {x-dest: v1}}, response: {set: {x-served-by: v1}}}
    - destination: {host: httpbin, subset: v2}
      weight: 50
      headers: {request: {set: {x-dest: v2}}, response: {set: {x-served-by: v2}}}
"""


def _vs(http: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: httpbin}\n"
        f"spec:\n  hosts: [httpbin]\n  http:\n{http}"
    )


def _err(text: str) -> str:
    with pytest.raises(UsageError) as info:
        loads(text, "lab.yaml")
    return str(info.value)


# --------------------------------------------------------------------------- reading


def test_read_headers_rewrite_redirect_direct_response() -> None:
    spec = loads(DR + "---\n" + VS)
    (vs,) = spec.virtual_services
    moved, secure, teapot, api, regex, split = vs.http
    assert (
        moved.redirect == Redirect(uri="/new", authority="example.com", code=302) and not moved.destinations
    )
    assert secure.redirect == Redirect(scheme="https", port=8443)
    assert teapot.direct_response is not None
    assert (teapot.direct_response.status, teapot.direct_response.body) == (418, b"short and stout")
    assert api.rewrite == Rewrite(uri="/anything/", authority="api.internal")
    assert api.headers == HeaderOps(
        request_set=(("x-lab", "set"),),
        request_add=(("x-added", "a"),),
        request_remove=("x-drop",),
        response_set=(("x-resp", "r"),),
        response_remove=("access-control-allow-credentials",),
    )
    assert api.destinations[0].headers == HeaderOps(request_set=(("x-dest", "v1"),))
    assert regex.rewrite == Rewrite(regex=("^/re/(.*)$", "/anything/\\1"))
    assert [d.headers.response_set for d in split.destinations if d.headers] == [
        (("x-served-by", "v1"),),
        (("x-served-by", "v2"),),
    ]
    assert not spec.warnings


def test_host_in_headers_becomes_the_authority() -> None:
    spec = loads(
        _vs(
            "  - headers:\n"
            "      request:\n"
            "        set: {Host: set.example, x-a: '1', x-pct: '100%% %HOSTNAME%'}\n"
            "    route: [{destination: {host: httpbin}}]\n"
        )
    )
    h = spec.virtual_services[0].http[0].headers
    assert h is not None
    assert h.authority == "set.example"
    assert h.request_set == (("x-a", "1"), ("x-pct", "100%% %HOSTNAME%")) and h.request_add == ()
    action = render.http_routes(spec.virtual_services[0].http[0], 8000)[0]["route"]
    assert action["host_rewrite_literal"] == "set.example"


@pytest.mark.parametrize(
    ("http", "message"),
    [
        (
            "  - redirect: {uri: /x}\n    route: [{destination: {host: httpbin}}]\n",
            "http[0]: give one of route, redirect or directResponse, not route and redirect",
        ),
        (
            "  - redirect: {uri: /x, redirectCode: 304}\n",
            "http[0].redirect.redirectCode: 304 is not a redirect",
        ),
        ("  - redirect: {port: 80, derivePort: FROM_REQUEST_PORT}\n", "give port or derivePort, not both"),
        ("  - redirect: {scheme: ftp}\n", "http[0].redirect.scheme: 'ftp': use http or https"),
        ("  - redirect: {uri: new}\n", "http[0].redirect.uri: 'new' must start with '/'"),
        ("  - directResponse: {body: {string: x}}\n", "http[0].directResponse.status: required"),
        ("  - directResponse: {status: 200, body: {bytes: '%%%'}}\n", "body.bytes: not valid base64"),
        (
            "  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n",
            "body: give one of string or bytes",
        ),
        (
            "  - rewrite: {}\n    route: [{destination: {host: httpbin}}]\n",
            "http[0].rewrite: give uri, uriRegexRewrite or authority",
        ),
        (
            "  - rewrite: {uriRegexRewrite: {match: '(', rewrite: x}}\n"
            "    route: [{destination: {host: httpbin}}]\n",
            "http[0].rewrite.uriRegexRewrite.match: invalid regex",
        ),
        (
            "  - headers: {request: {set: {'bad name': x}}}\n    route: [{destination: {host: httpbin}}]\n",
            "http[0].headers.request.set.bad name: 'bad name' is not a valid header name",
        ),
        (
            "  - headers: {request: {sett: {a: b}}}\n    route: [{destination: {host: httpbin}}]\n",
            "http[0].headers.request.sett: unknown field (did you mean 'set'?)",
        ),
        # Istio's validation of header operations and of route actions
        (
            "  - headers: {request: {set: {':path': /x}}}\n    route: [{destination: {host: httpbin}}]\n",
            "headers.request.set.:path: ':path': header cannot have ':' prefix",
        ),
        (
            "  - headers: {request: {remove: [host]}}\n    route: [{destination: {host: httpbin}}]\n",
            "headers.request.remove[0]: cannot set Host header",
        ),
        (
            "  - headers: {response: {set: {host: x}}}\n    route: [{destination: {host: httpbin}}]\n",
            "headers.response.set.host: cannot set Host header",
        ),
        (
            "  - headers: {request: {set: {host: a}, add: {':authority': b}}}\n"
            "    route: [{destination: {host: httpbin}}]\n",
            "authority header cannot be set multiple times: have 'a', attempting to set 'b'",
        ),
        (
            "  - rewrite: {authority: a}\n    headers: {request: {set: {host: b}}}\n"
            "    route: [{destination: {host: httpbin}}]\n",
            "authority header cannot be set multiple times",
        ),
        (
            "  - headers: {request: {set: {x-p: 50%}}}\n    route: [{destination: {host: httpbin}}]\n",
            "'50%': a literal '%' must be written '%%'",
        ),
        (
            "  - redirect: {redirectCode: 302}\n",
            "http[0].redirect: redirect must specify uri, authority, scheme or port",
        ),
        ("  - redirect: {}\n", "redirect must specify"),
        (
            "  - redirect: {uri: /x}\n    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n",
            "http[0].fault: an HTTP route cannot contain both fault and redirect",
        ),
        (
            "  - directResponse: {status: 200}\n    rewrite: {uri: /x}\n",
            "http[0].rewrite: an HTTP route cannot contain both rewrite and directResponse",
        ),
        (
            "  - rewrite: {uriRegexRewrite: {match: '^/a'}}\n    route: [{destination: {host: httpbin}}]\n",
            "uriRegexRewrite.rewrite: required",
        ),
    ],
)
def test_bad_route_actions(http: str, message: str) -> None:
    assert message in _err(_vs(http))


# --------------------------------------------------------------------------- rendering


def test_rendered_like_istio() -> None:
    spec = loads(DR + "---\n" + VS)
    routes = render.http_routes(spec.virtual_services[0].http[0], 8000)
    assert routes == [
        {
            "name": "moved",
            "match": {"prefix": "/old"},
            "redirect": {"response_code": "FOUND", "host_redirect": "example.com", "path_redirect": "/new"},
        }
    ]
    vs = spec.virtual_services[0]
    assert render.http_routes(vs.http[1], 8000)[0]["redirect"] == {
        "response_code": "MOVED_PERMANENTLY",
        "scheme_redirect": "https",
        "port_redirect": 8443,
    }
    teapot = render.http_routes(vs.http[2], 8000)[0]
    assert teapot["direct_response"] == {"status": 418, "body": {"inline_string": "short and stout"}}
    assert teapot["response_headers_to_add"] == [
        {"header": {"key": "x-direct", "value": "yes"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    api = render.http_routes(vs.http[3], 8000)[0]
    assert api["route"]["prefix_rewrite"] == "/anything/"
    assert api["route"]["host_rewrite_literal"] == "api.internal"
    # the single destination's header operations are appended to the route's
    assert [h["header"]["key"] for h in api["request_headers_to_add"]] == ["x-lab", "x-added", "x-dest"]
    assert [h["append_action"] for h in api["request_headers_to_add"]] == [
        "OVERWRITE_IF_EXISTS_OR_ADD",
        "APPEND_IF_EXISTS_OR_ADD",
        "OVERWRITE_IF_EXISTS_OR_ADD",
    ]
    assert api["request_headers_to_remove"] == ["x-drop"]
    regex = render.http_routes(vs.http[4], 8000)[0]
    assert regex["route"]["regex_rewrite"] == {
        "pattern": {"regex": "^/re/(.*)$"},
        "substitution": "/anything/\\1",
    }
    split = render.http_routes(vs.http[5], 8000)[0]
    clusters = split["route"]["weighted_clusters"]["clusters"]
    assert [c["request_headers_to_add"][0]["header"]["value"] for c in clusters] == ["v1", "v2"]
    assert "request_headers_to_add" not in split  # weighted: per cluster, not on the route


def test_derive_port_and_default_ports() -> None:
    def rd(body: str) -> dict[str, object]:
        spec = loads(_vs(f"  - redirect: {body}\n"))
        out: dict[str, object] = render.http_routes(spec.virtual_services[0].http[0], 9080)[0]["redirect"]
        return out

    assert rd("{derivePort: FROM_REQUEST_PORT}")["port_redirect"] == 9080
    assert "port_redirect" not in rd("{derivePort: FROM_PROTOCOL_DEFAULT}")
    assert "port_redirect" not in rd("{port: 80}")  # no explicit :80 for http
    assert "port_redirect" not in rd("{scheme: https, port: 443}")
    assert rd("{scheme: https, port: 80}")["port_redirect"] == 80


def test_direct_response_bodies() -> None:
    def rendered(body: str) -> dict[str, object]:
        spec = loads(_vs(f"  - directResponse: {{status: 200, body: {body}}}\n"))
        out: dict[str, object] = render.http_routes(spec.virtual_services[0].http[0], 8000)[0][
            "direct_response"
        ]
        return out

    assert rendered("{bytes: '/wA='}") == {"status": 200, "body": {"inline_bytes": "/wA="}}
    assert rendered("{bytes: 'aGk='}") == {
        "status": 200,
        "body": {"inline_bytes": "aGk="},
    }  # bytes stay bytes
    assert rendered("{}") == {"status": 200}  # no body, as in Istio
    big = "x" * (1024 * 1024 + 1)
    assert "the body must be less than 1MB" in _err(
        _vs(f"  - directResponse: {{status: 200, body: {{string: {big}}}}}\n")
    )


def test_route_config_allows_istio_sized_direct_bodies() -> None:
    spec = loads(_vs("  - directResponse: {status: 200, body: {string: ok}}\n"))
    cfg = render.render(spec, _ports(spec))
    listeners = cfg["static_resources"]["listeners"]
    hcm = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["route_config"]["max_direct_response_body_size_bytes"] == 1024 * 1024  # Envoy's default: 4 KiB


def test_a_100_0_split_stays_weighted_like_istio() -> None:
    spec = loads(
        DR
        + "---\n"
        + _vs(
            "  - route:\n"
            "    - destination: {host: httpbin, subset: v1}\n"
            "      weight: 100\n"
            "      headers: {request: {set: {x-d: v1}}}\n"
            "    - {destination: {host: httpbin, subset: v2}, weight: 0}\n"
        )
    )
    route = render.http_routes(spec.virtual_services[0].http[0], 8000)[0]
    clusters = route["route"]["weighted_clusters"]["clusters"]
    assert [c["name"] for c in clusters] == ["outbound|8000|v1|httpbin.default.svc.cluster.local"]
    assert clusters[0]["request_headers_to_add"][0]["header"]["key"] == "x-d"
    assert "request_headers_to_add" not in route


# --------------------------------------------------------------------------- in traffic


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    d: Path = tmp_path_factory.mktemp("actions")
    (d / "lab.yaml").write_text(DR + "---\n" + VS)
    lab = Lab([str(d / "lab.yaml")], None, keep=False)
    try:
        yield lab
    finally:
        lab.close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=5)
    try:
        conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_redirects_answered_by_envoy(lab: Lab) -> None:
    status, headers, _ = _get(lab.url("httpbin", "/old/page"))
    assert status == 302
    assert headers["location"] == "http://example.com/new"
    status, headers, _ = _get(lab.url("httpbin", "/secure"))
    assert status == 301
    assert headers["location"].startswith("https://") and headers["location"].endswith(":8443/secure")


@pytest.mark.slow
def test_direct_response_with_its_response_header(lab: Lab) -> None:
    status, headers, body = _get(lab.url("httpbin", "/teapot"))
    assert (status, body) == (418, b"short and stout")
    assert headers["x-direct"] == "yes"


@pytest.mark.slow
def test_rewrite_and_header_operations_reach_the_upstream(lab: Lab) -> None:
    status, headers, body = _get(lab.url("httpbin", "/api/thing"), {"x-drop": "1", "x-added": "pre"})
    assert status == 200
    echo = json.loads(body)
    assert urlsplit(echo["url"]).path == "/anything/thing"  # prefix /api/ -> /anything/
    got = echo["headers"]
    assert got["Host"] == "api.internal"
    assert got["X-Lab"] == "set" and got["X-Dest"] == "v1"
    assert got["X-Added"] == "pre,a"  # add appends
    assert "X-Drop" not in got
    assert headers["x-resp"] == "r"
    assert "access-control-allow-credentials" not in headers  # httpbin sends it; the route removes it
    status, _, body = _get(lab.url("httpbin", "/re/deep/path"))
    assert status == 200 and urlsplit(json.loads(body)["url"]).path == "/anything/deep/path"


@pytest.mark.slow
def test_weighted_destinations_carry_their_own_headers(lab: Lab) -> None:
    seen: set[str] = set()
    for _ in range(30):
        status, headers, body = _get(lab.url("httpbin", "/headers"))
        assert status == 200
        served = headers["x-served-by"]
        assert json.loads(body)["headers"]["X-Dest"] == served  # request and response ops of one cluster
        seen.add(served)
    assert seen == {"v1", "v2"}  # 50/50: all 30 on one side has probability 2e-9


# --------------------------------------------------------------------------- consistent hashing

HASH_DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: end-user}
"""


def _ports(spec: LabSpec) -> render.Ports:
    ups = {(s.host, sub): () for s in spec.services for sub in ("", *(x.name for x in s.subsets))}
    listeners = {s.host: 20000 + i for i, s in enumerate(spec.services)}
    return render.Ports(admin=1, listeners=listeners, upstreams=ups)  # type: ignore[arg-type]


def _dr_lb(lb: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: httpbin}\n"
        f"spec:\n  host: httpbin\n  trafficPolicy:\n    loadBalancer:\n{lb}"
    )


def test_consistent_hash_read_and_rendered_like_istio() -> None:
    spec = loads(HASH_DR)
    (cluster,) = render.clusters(spec, _ports(spec))
    assert cluster["lb_policy"] == "RING_HASH"
    assert cluster["ring_hash_lb_config"] == {"minimum_ring_size": 1024}  # Istio's default ring
    route = render.virtual_host(spec, spec.services[0], catch_all=True)["routes"][0]["route"]
    assert route["hash_policy"] == [{"header": {"header_name": "end-user"}}]

    cookie = loads(
        _dr_lb(
            "      consistentHash:\n        httpCookie: {name: sticky, ttl: 30s, path: /}\n"
            "        maglev: {tableSize: 65537}\n"
        )
    )
    (cluster,) = render.clusters(cookie, _ports(cookie))
    assert (cluster["lb_policy"], cluster["maglev_lb_config"]) == ("MAGLEV", {"table_size": 65537})
    route = render.virtual_host(cookie, cookie.services[0], catch_all=True)["routes"][0]["route"]
    assert route["hash_policy"] == [{"cookie": {"name": "sticky", "ttl": "30s", "path": "/"}}]
    ring = loads(_dr_lb("      consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 64}}\n"))
    (cluster,) = render.clusters(ring, _ports(ring))
    assert cluster["ring_hash_lb_config"] == {"minimum_ring_size": 64}


def test_consistent_hash_on_a_vs_route_keeps_retries_on_the_hashed_host() -> None:
    spec = loads(
        HASH_DR
        + "  subsets:\n  - {name: v1, labels: {version: v1}}\n"
        + "---\n"
        + _vs("  - route: [{destination: {host: httpbin, subset: v1}}]\n")
    )
    route = render.virtual_host(spec, spec.services[0], catch_all=True)["routes"][0]["route"]
    assert route["hash_policy"] == [{"header": {"header_name": "end-user"}}]
    assert "retry_host_predicate" not in route["retry_policy"]  # Istio's DefaultConsistentHashPolicy
    clusters = {c["name"]: c for c in render.clusters(spec, _ports(spec))}
    assert {c["lb_policy"] for c in clusters.values()} == {"RING_HASH"}  # the subset inherits it


@pytest.mark.parametrize(
    ("lb", "message"),
    [
        (
            "      simple: RANDOM\n      consistentHash: {useSourceIp: true}\n",
            "give simple or consistentHash, not both",
        ),
        ("      consistentHash: {}\n", "consistentHash: give one of httpHeaderName, httpCookie"),
        (
            "      consistentHash: {httpHeaderName: a, httpQueryParameterName: b}\n",
            "not httpHeaderName and httpQueryParameterName",
        ),
        ("      consistentHash: {useSourceIp: false}\n", "useSourceIp: false hashes nothing"),
        ("      consistentHash: {httpCookie: {ttl: 1s}}\n", "httpCookie.name: required"),
        (
            "      consistentHash: {httpHeaderName: a, ringHash: {}, maglev: {}}\n",
            "give ringHash or maglev, not both",
        ),
        ("      consistentHash: {httpHeaderName: a, maglev: {}}\n", "maglev.tableSize: required"),
        (
            "      consistentHash: {httpHeaderName: a, maglev: {tableSize: 1000}}\n",
            "1000 is not a prime number",
        ),
        (
            "      consistentHash: {httpHeaderName: a, minimumRingSize: 8, ringHash: {minimumRingSize: 8}}\n",
            "only one of minimumRingSize or maglev/ringHash can be specified",
        ),
    ],
)
def test_bad_consistent_hash(lb: str, message: str) -> None:
    assert message in _err(_dr_lb(lb))


@pytest.fixture(scope="module")
def hash_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    d: Path = tmp_path_factory.mktemp("hash")
    (d / "dr.yaml").write_text(HASH_DR)
    (d / "topo.yaml").write_text("services:\n- {name: httpbin, replicas: 2}\n")
    lab = Lab([str(d / "dr.yaml")], str(d / "topo.yaml"), keep=False)
    try:
        yield lab
    finally:
        lab.close()


def _users_per_replica(lab: Lab) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    for p in lab.upstreams("httpbin"):
        seen: dict[str, int] = {}
        for line in Path(p.access_log).read_text().splitlines():
            user = line.split('"')[-4]  # the format ends with "end-user" "x-request-id"
            if '"GET /get ' in line and user.startswith("user"):  # not the readiness probes
                seen[user] = seen.get(user, 0) + 1
        out.append(seen)
    return out


@pytest.mark.slow
def test_consistent_hash_keeps_each_user_on_one_replica(hash_lab: Lab) -> None:
    users = [f"user{i}" for i in range(20)]
    for _ in range(4):
        for u in users:
            status, _, _ = _get(hash_lab.url("httpbin", "/get"), {"end-user": u})
            assert status == 200
    deadline = time.monotonic() + 5
    while True:
        per = _users_per_replica(hash_lab)
        if sum(sum(s.values()) for s in per) >= 80 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(per) == 2
    assert sum(sum(s.values()) for s in per) == 80
    for u in users:
        on = [s.get(u, 0) for s in per]
        assert sorted(on) == [0, 4], (u, on)  # all four requests of a user on one replica
    assert all(per), per  # 20 users all hashed to one replica: probability 2e-6


def _route_for(dr: str, http: str) -> dict[str, Any]:
    spec = loads(dr + "---\n" + _vs(http))
    out: dict[str, Any] = render.virtual_host(spec, spec.services[0], catch_all=True)["routes"][0]["route"]
    return out


HASH_BY_USER = {"header": {"header_name": "end-user"}}


def test_route_hash_follows_istios_lookup_order() -> None:
    # a subset with a simple load balancer under a top-level hash: the route still hashes (Istio's
    # hashForHTTPDestination looks for a hash, not for the merged policy) and retries stay put
    dr = (
        HASH_DR
        + "  subsets:\n  - name: v1\n    labels: {version: v1}\n"
        + "    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"
    )
    route = _route_for(dr, "  - route: [{destination: {host: httpbin, subset: v1}}]\n")
    assert route["hash_policy"] == [HASH_BY_USER]
    assert "retry_host_predicate" not in route["retry_policy"]
    spec = loads(dr)
    by_name = {c["name"]: c for c in render.clusters(spec, _ports(spec))}
    assert by_name["outbound|8000|v1|httpbin.default.svc.cluster.local"]["lb_policy"] == "ROUND_ROBIN"

    # a port-level entry without a load balancer does not hide the top-level hash
    dr = (
        HASH_DR
        + "    portLevelSettings:\n    - {port: {number: 8000}, connectionPool: {tcp: {maxConnections: 5}}}\n"
    )
    assert _route_for(dr, "  - route: [{destination: {host: httpbin, port: {number: 8000}}}]\n")[
        "hash_policy"
    ] == [HASH_BY_USER]
    spec = loads(dr)
    assert render.virtual_host(spec, spec.services[0], catch_all=True)["routes"][0]["route"][
        "hash_policy"
    ] == [HASH_BY_USER]

    # a port-level hash counts only when the destination names its port
    dr = (
        HASH_DR
        + "    portLevelSettings:\n    - port: {number: 8000}\n"
        + "      loadBalancer: {consistentHash: {useSourceIp: true}}\n"
    )
    named = _route_for(dr, "  - route: [{destination: {host: httpbin, port: {number: 8000}}}]\n")
    unnamed = _route_for(dr, "  - route: [{destination: {host: httpbin}}]\n")
    assert named["hash_policy"] == [{"connection_properties": {"source_ip": True}}]
    assert unnamed["hash_policy"] == [HASH_BY_USER]


def test_weighted_routes_hash_but_keep_the_previous_hosts_predicate() -> None:
    dr = (
        HASH_DR + "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n"
    )
    route = _route_for(
        dr,
        "  - route:\n"
        "    - {destination: {host: httpbin, subset: v1}, weight: 50}\n"
        "    - {destination: {host: httpbin, subset: v2}, weight: 50}\n",
    )
    assert route["hash_policy"] == [HASH_BY_USER, HASH_BY_USER]  # one per weighted destination
    assert "retry_host_predicate" in route["retry_policy"]  # ConvertPolicy(policy, false)


# --------------------------------------------------------------------------- Envoy accepts it

VALIDATE_CASES = {
    "maglev-cookie": HASH_DR.replace(
        "consistentHash: {httpHeaderName: end-user}",
        "consistentHash: {httpCookie: {name: sticky, ttl: 30s, path: /}, maglev: {tableSize: 65537}}",
    ),
    "source-ip-ring": HASH_DR.replace(
        "consistentHash: {httpHeaderName: end-user}",
        "consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 64}}",
    ),
    "query-parameter": HASH_DR.replace(
        "consistentHash: {httpHeaderName: end-user}", "consistentHash: {httpQueryParameterName: user}"
    ),
    "actions": DR + "---\n" + VS,
    "binary-body-and-derive-port": _vs(
        "  - match: [{uri: {exact: /b}}]\n    directResponse: {status: 200, body: {bytes: '/wA='}}\n"
        "  - redirect: {authority: example.com, derivePort: FROM_REQUEST_PORT, redirectCode: 308}\n"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(VALIDATE_CASES))
def test_envoy_validates_the_rendered_config(case: str, tmp_path: Path) -> None:
    """``envoy --mode validate``: the real Envoy 1.40 accepts what the lab renders."""
    import subprocess

    from loadgen.lab.supervise import find_envoy

    spec = loads(VALIDATE_CASES[case])
    cfg = tmp_path / "bootstrap.yaml"
    cfg.write_text(render.render_yaml(spec, _ports(spec)))
    proc = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(cfg), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout + proc.stderr
