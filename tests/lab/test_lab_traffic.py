"""VirtualService fields that change behaviour, checked in traffic through the lab's real Envoy:
route ``timeout``, ``retries`` (attempts, retryOn), and a header-matched route to a subset.
The upstream is ``loadgen serve`` (fortio's echo parameters make it slow or failing on demand)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.lab.harness import Ctx, Lab, deltas, load, stat
from loadgen.lab.verdicts import Outcome

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - match:
    - headers:
        x-case: {exact: timeout}
    timeout: 300ms
    route:
    - destination: {host: echo}
  - match:
    - headers:
        x-case: {exact: retry}
    retries: {attempts: 2, retryOn: 5xx}
    route:
    - destination: {host: echo}
  - match:
    - headers:
        x-case: {exact: noretry}
    retries: {attempts: 0}
    route:
    - destination: {host: echo}
  - route:
    - destination: {host: echo}
"""
TOPOLOGY = "services:\n- name: echo\n  kind: serve\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    d: Path = tmp_path_factory.mktemp("traffic")
    (d / "vs.yaml").write_text(VS)
    (d / "topo.yaml").write_text(TOPOLOGY)
    lab = Lab([str(d / "vs.yaml")], str(d / "topo.yaml"), keep=False)
    try:
        yield lab
    finally:
        lab.close()


def _ctx(lab: Lab) -> Ctx:
    return Ctx(lab=lab, engine="", err=io.StringIO(), out=Outcome("traffic"), verbose=False, files={})


def test_route_timeout_answers_504_at_the_timeout(lab: Lab) -> None:
    url = lab.url("echo", "/?delay=1s")
    r = load(
        _ctx(lab), "timeout", url, c=2, n=4, headers=(("x-case", "timeout"),), cluster=lab.cluster("echo")
    )
    er = r.engine_result
    assert er.codes == {504: 4}
    p50 = er.service.percentile(50) / 1e9
    assert 0.25 <= p50 <= 0.6, p50  # Envoy's route timeout, not the upstream's 1 s
    assert stat(deltas(r), lab.cluster("echo"), "upstream_rq_timeout") == 4
    # without the route timeout (Istio's default: none) the same request takes the full second
    r = load(_ctx(lab), "no timeout", url, c=1, n=1, cluster=lab.cluster("echo"))
    assert r.engine_result.codes == {200: 1}
    assert r.engine_result.service.percentile(50) / 1e9 >= 0.95


def test_retries_attempts_and_retry_on(lab: Lab) -> None:
    url = lab.url("echo", "/?status=503")
    cl = lab.cluster("echo")
    r = load(_ctx(lab), "retry", url, c=1, n=5, headers=(("x-case", "retry"),), cluster=cl)
    assert r.engine_result.codes == {503: 5}
    d = deltas(r)
    assert stat(d, cl, "upstream_rq_retry") == 10  # attempts: 2 per request
    assert stat(d, cl, "upstream_rq_total") == 15
    r = load(_ctx(lab), "no retry", url, c=1, n=5, headers=(("x-case", "noretry"),), cluster=cl)
    d = deltas(r)
    assert stat(d, cl, "upstream_rq_retry") == 0 and stat(d, cl, "upstream_rq_total") == 5
    # Istio's default policy (no retries field): connect-failure,refused-stream,unavailable,
    # cancelled,retriable-status-codes with no status codes since 1.24: a 503 is not retried
    r = load(_ctx(lab), "default", url, c=1, n=5, cluster=cl)
    d = deltas(r)
    assert stat(d, cl, "upstream_rq_retry") == 0 and stat(d, cl, "upstream_rq_total") == 5
