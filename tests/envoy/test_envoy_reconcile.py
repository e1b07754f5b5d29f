"""The verdict: client view vs Envoy counters, for each way a 503 happens (facts/envoy.md §1.1-1.2)."""

from __future__ import annotations

from loadgen.envoy.reconcile import ClientView, reconcile


def cl(**stats: int) -> dict[str, dict[str, int]]:
    return {"httpbin": dict(stats)}


def test_exact_pending_overflow() -> None:
    v = reconcile(
        ClientView({200: 19, 503: 11}, {503: 11}),
        cl(upstream_rq_pending_overflow=11, upstream_rq_503=11, upstream_cx_overflow=17),
    )
    assert v.status == "exact"
    assert v.sentence == "11 of 11 503s are circuit-breaker rejections (pending overflow +11)"
    assert (v.rejections, v.cx_overflow, v.unexplained_503) == (11, 17, 0)


def test_active_overflow_counts_as_rejection_and_sums_clusters() -> None:
    deltas = {
        "a": {"upstream_rq_active_overflow": 9, "upstream_rq_503": 9},
        "b": {"upstream_rq_pending_overflow": 4, "upstream_rq_503": 4},
    }
    v = reconcile(ClientView({503: 13}, {503: 13}), deltas)
    assert v.status == "exact"
    assert "pending overflow +4, active overflow +9" in v.sentence
    assert v.to_json()["Rejections"] == 13


def test_upstream_503s_are_explained_but_not_called_overflow() -> None:
    v = reconcile(ClientView({503: 14}, {503: 11}), cl(upstream_rq_pending_overflow=11, upstream_rq_503=14))
    assert v.status == "exact"
    assert v.router_503_not_overflow == 3
    assert v.sentence.startswith(
        "11 of 14 503s are circuit-breaker rejections (pending overflow +11); 3 other: upstream returned 503"
    )


def test_fault_aborts_explain_plain_503s() -> None:
    v = reconcile(ClientView({503: 4, 200: 1}, {}), cl(), {"ingress_http": {"fault.aborts_injected": 4}})
    assert v.status == "exact"
    assert "fault abort (fault.aborts_injected +4)" in v.sentence
    assert v.sentence.startswith("0 of 4 503s are circuit-breaker rejections")


def test_unexplained_when_no_counter_moves() -> None:
    v = reconcile(ClientView({503: 5}, {503: 2}), cl(upstream_rq_pending_overflow=2, upstream_rq_503=2))
    assert v.status == "unexplained"
    assert v.unexplained_503 == 3
    assert "3 of 5 503s are not explained" in v.reason
    assert "UNEXPLAINED" in v.sentence


def test_header_without_counter_is_unexplained() -> None:
    # e.g. an overloaded 503 from another Envoy further down the path, or a cluster outside the regex
    v = reconcile(ClientView({503: 6}, {503: 6}), cl(upstream_rq_pending_overflow=4, upstream_rq_503=4))
    assert v.status == "unexplained"
    assert "2 of 6 503s with x-envoy-overloaded have no overflow counter" in v.reason


def test_in_flight_requests_give_tolerance_not_a_pass() -> None:
    view = ClientView({503: 9}, {503: 9}, in_flight_at_end=2)
    v = reconcile(view, cl(upstream_rq_pending_overflow=11, upstream_rq_503=11))
    assert v.status == "within_tolerance"
    assert "still in flight" in v.reason
    v = reconcile(
        ClientView({503: 9}, {503: 9}, in_flight_at_end=1),
        cl(upstream_rq_pending_overflow=11, upstream_rq_503=11),
    )
    assert v.status == "unexplained"


def test_retry_overflow_is_reported_without_503s_of_its_own() -> None:
    v = reconcile(ClientView({503: 30}, {}), cl(upstream_rq_retry_overflow=29, upstream_rq_503=30))
    assert v.status == "exact"
    assert "retry overflow +29 (those requests got the upstream's own response)" in v.sentence
    assert v.rejections == 0


def test_no_503s() -> None:
    v = reconcile(ClientView({200: 30}, {}), cl(upstream_cx_overflow=3))
    assert v.status == "exact"
    assert v.sentence == "no 503s, and Envoy counted no circuit-breaker rejections"


def test_fortio_client_without_header_counts_is_attributed_by_count() -> None:
    from loadgen.envoy.reconcile import ClientView, reconcile

    cl = {"c": {"upstream_rq_pending_overflow": 11, "upstream_rq_503": 11}}
    v = reconcile(ClientView(codes={200: 19, 503: 11}, overloaded={}, overloaded_known=False), cl)
    assert v.status == "exact" and v.client_503_overloaded == 11
    assert "11 of 11 503s are circuit-breaker rejections" in v.sentence
    assert "attributed by count" in v.sentence
    # the same numbers from a client that does report the header, but saw none: unexplained
    v = reconcile(ClientView(codes={200: 19, 503: 11}, overloaded={}), cl)
    assert v.status == "unexplained"
    # fortio, but more 503s than Envoy's counters explain
    v = reconcile(ClientView(codes={200: 15, 503: 15}, overloaded_known=False), cl)
    assert v.status == "unexplained" and v.unexplained_503 == 4


def test_a_500_abort_does_not_explain_a_503() -> None:
    from loadgen.envoy.reconcile import ClientView, reconcile

    # 10 fault aborts with status 500, and 3 plain 503s that no counter explains
    http = {"outbound_0.0.0.0_8000": {"fault.aborts_injected": 10}}
    v = reconcile(ClientView(codes={200: 87, 500: 10, 503: 3}), {"c": {}}, http)
    assert v.status == "unexplained" and v.unexplained_503 == 3
    # the same aborts configured as 503: they explain the 503s
    v = reconcile(ClientView(codes={200: 90, 503: 10}), {"c": {}}, http)
    assert v.status == "exact"
