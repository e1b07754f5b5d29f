"""Reconcile what the client saw with what Envoy counted: the circuit-breaker verdict.

What it is: :func:`reconcile` takes a :class:`ClientView` (status counts and, per status, how many
responses carried ``x-envoy-overloaded``, plus requests still in flight when the last snapshot was
taken) and the per-cluster stat deltas, and returns a :class:`Verdict`: the numbers side by side,
a status (``exact`` / ``within_tolerance`` / ``unexplained``) and one sentence a person can read.

How a 503 reaches the client, and what Envoy counts for it (facts/envoy.md §1.1–1.2, Part 2):

* circuit-breaker rejection (max_pending_requests / max_requests): a local 503 *with*
  ``x-envoy-overloaded: true``; counted in ``upstream_rq_pending_overflow`` or (Envoy ≥ 1.38, for
  max_requests) ``upstream_rq_active_overflow``, and also in ``upstream_rq_503``;
* any other 503 the router answers (the upstream's own 503, connect failure, no healthy upstream):
  no header; counted in ``upstream_rq_503`` (one per request even when retried);
* fault filter abort: a local response with the configured status, no header, counted only in
  ``http.<prefix>.fault.aborts_injected`` (never reaches the cluster);
* retry overflow (max_retries): no 503 of its own; the client gets the upstream's response.

What it is not: no I/O, no knowledge of engines or run results (input is plain data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from loadgen.envoy import catalogue
from loadgen.text import plural

Status = Literal["exact", "within_tolerance", "unexplained"]


@dataclass
class ClientView:
    """What the client saw. ``overloaded[code]`` counts responses with ``x-envoy-overloaded``.

    ``overloaded_known`` is False when the client's tool does not report that header (fortio's
    JSON): then as many 503s as Envoy counted rejections are attributed to the circuit breaker by
    count, and the sentence says so.
    """

    codes: dict[int, int] = field(default_factory=dict)
    overloaded: dict[int, int] = field(default_factory=dict)
    in_flight_at_end: int = 0
    overloaded_known: bool = True


@dataclass
class Verdict:
    client_503: int
    client_503_overloaded: int
    client_overloaded_other: int  # responses with x-envoy-overloaded whose status was not 503
    pending_overflow: int
    active_overflow: int
    rejections: int  # pending_overflow + active_overflow
    retry_overflow: int
    cx_overflow: int
    upstream_rq_503: int
    router_503_not_overflow: int  # upstream_rq_503 - rejections (upstream's own 503s, connect failures…)
    no_healthy: int
    aborts_injected: int
    unexplained_503: int
    status: Status
    reason: str
    sentence: str

    def to_json(self) -> dict[str, Any]:
        return {_camel(k): v for k, v in asdict(self).items()}


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def _sum(deltas: Mapping[str, Mapping[str, int]], stat: str) -> int:
    return sum(catalogue.value(d, stat) for d in deltas.values())


def reconcile(
    client: ClientView,
    cluster_deltas: Mapping[str, Mapping[str, int]],
    http_deltas: Mapping[str, Mapping[str, int]] | None = None,
) -> Verdict:
    """Compare the client's 503s with Envoy's counters (summed over the given clusters / HCMs)."""
    c503 = int(client.codes.get(503, 0))
    pend = _sum(cluster_deltas, "upstream_rq_pending_overflow")
    act = _sum(cluster_deltas, "upstream_rq_active_overflow")
    rej = pend + act
    if client.overloaded_known:
        ov503 = int(client.overloaded.get(503, 0))
        ov_other = sum(int(v) for k, v in client.overloaded.items() if k != 503)
    else:  # attribute by count: the header is not known
        ov503, ov_other = min(c503, rej), 0
    retry = _sum(cluster_deltas, "upstream_rq_retry_overflow")
    cxo = _sum(cluster_deltas, "upstream_cx_overflow")
    up503 = _sum(cluster_deltas, "upstream_rq_503")
    no_healthy = _sum(cluster_deltas, "upstream_cx_none_healthy")
    aborts = _sum(http_deltas or {}, "fault.aborts_injected")
    router_other = max(0, up503 - rej)
    plain = c503 - ov503  # 503s without the header
    slack = max(0, int(client.in_flight_at_end))

    # the overload part: every header-carrying 503 should be one counted rejection
    d_ov = rej - ov503
    # the other part: plain 503s are the router's non-overflow 503s, plus fault aborts (any status)
    # a fault abort answers with its configured status: the client's non-2xx codes other than 503
    # absorb aborts first, so that a 500-abort fault never "explains" a 503
    other_errors = sum(int(v) for k, v in client.codes.items() if k not in (503, -1) and not 200 <= k < 300)
    aborts_503 = max(0, aborts - other_errors)
    explained_plain = min(plain, router_other + aborts_503)
    unexplained_plain = plain - explained_plain
    surplus_plain = max(0, router_other - plain)  # Envoy counted more router 503s than the client saw

    ov_parts = [f"pending overflow +{pend}"] if pend or not act else []
    if act:
        ov_parts.append(f"active overflow +{act}")
    ov_text = ", ".join(ov_parts)

    problems: list[str] = []
    tolerated: list[str] = []
    if d_ov > 0:
        msg = (
            f"Envoy counted {rej} rejections ({ov_text}) but the client saw "
            f"{plural(ov503, '503')} with x-envoy-overloaded"
        )
        (tolerated if d_ov <= slack else problems).append(msg)
    elif d_ov < 0:
        problems.append(
            f"{-d_ov} of {ov503} 503s with x-envoy-overloaded have no overflow counter "
            f"({ov_text}; another Envoy on the path, or a cluster outside -envoy-cluster?)"
        )
    if unexplained_plain:
        problems.append(
            f"{unexplained_plain} of {c503} 503s are not explained by any counter "
            f"(upstream_rq_503 +{up503}, overflows +{rej}, fault aborts +{aborts})"
        )
    if surplus_plain:
        msg = (
            f"Envoy counted {router_other} non-overflow 503s (upstream_rq_503 +{up503} minus overflows "
            f"+{rej}) but the client saw {plain} without x-envoy-overloaded"
        )
        (tolerated if surplus_plain <= slack else problems).append(msg)
    if ov_other:
        problems.append(f"{ov_other} non-503 responses carried x-envoy-overloaded")

    status: Status
    if problems:
        status, reason = "unexplained", "; ".join(problems + tolerated)
    elif tolerated:
        status = "within_tolerance"
        reason = "; ".join(tolerated) + f": {plural(slack, 'request')} still in flight at the last snapshot"
    else:
        status, reason = "exact", ""

    # the sentence
    if c503 == 0 and rej == 0:
        sentence = "no 503s, and Envoy counted no circuit-breaker rejections"
    else:
        head = f"{min(ov503, rej)} of {c503} 503s are circuit-breaker rejections ({ov_text})"
        rest: list[str] = []
        if plain:
            bits = []
            up_only = max(0, router_other - no_healthy)
            if up_only:
                bits.append(
                    f"upstream returned 503 (upstream_rq_503 +{up503}, of which {rej} overflows)"
                    if rej
                    else f"upstream returned 503 (upstream_rq_503 +{up503})"
                )
            if no_healthy:
                bits.append(f"no healthy upstream (upstream_cx_none_healthy +{no_healthy})")
            if aborts:
                bits.append(f"fault abort (fault.aborts_injected +{aborts})")
            what = ", ".join(bits) if bits else "no Envoy counter accounts for them"
            if explained_plain != plain or not bits:
                rest.append(f"{explained_plain} of {plain} other 503s: {what}")
            else:
                rest.append(f"{plain} other: {what}")
        if retry:
            rest.append(f"retry overflow +{retry} (those requests got the upstream's own response)")
        sentence = head + ("; " + "; ".join(rest) if rest else "")
        if not client.overloaded_known:
            sentence += " (attributed by count: the client's tool does not report x-envoy-overloaded)"
        if status == "unexplained":
            sentence += f" — UNEXPLAINED: {reason}"
        elif status == "within_tolerance":
            sentence += f" (within tolerance: {reason})"
    return Verdict(
        client_503=c503,
        client_503_overloaded=ov503,
        client_overloaded_other=ov_other,
        pending_overflow=pend,
        active_overflow=act,
        rejections=rej,
        retry_overflow=retry,
        cx_overflow=cxo,
        upstream_rq_503=up503,
        router_503_not_overflow=router_other,
        no_healthy=no_healthy,
        aborts_injected=aborts,
        unexplained_503=unexplained_plain,
        status=status,
        reason=reason,
        sentence=sentence,
    )
