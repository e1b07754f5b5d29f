"""Differential test: the engines' response parsers against h11's client-side parser (hypothesis).

Generated HTTP/1.1 responses, valid and invalid (status lines, headers with duplicates, odd
whitespace and obs-fold, Content-Length vs chunked, chunk framing with extensions and trailers,
close-delimited bodies, bare LF line ends), are parsed, each followed by the peer closing:

* by the C parser (``loadgen._core._fuzz_parse``, the engine's own C code without sockets),
* by the Python engine's :func:`loadgen._engine_py.read_response` (over an in-memory stream),
* by h11 (``h11.Connection(h11.CLIENT)``),
* and, for a smaller sample, through a scripted server by each engine for real (``engine``).

They must agree on the outcome: the same status code and the same number of bytes the first
response occupies on the wire (which is the framing decision and the body length together), or
all reject it (for the engines: ``malformed`` or ``eof``; for h11: ``RemoteProtocolError``).
The C and the Python parsers must agree exactly, always. Where h11 differs by design, the case
is allowed only when the generated response has one of the features in :data:`DIFFERENCES`.
"""

from __future__ import annotations

import asyncio
from types import ModuleType

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import CLOSE, ScriptedServer, make_cfg, run

from loadgen._engine_py import CallError, _Wire, read_response

core = pytest.importorskip("loadgen._core", reason="C engine not built")

pytestmark = pytest.mark.timeout(120)

# Deliberate, justified differences from h11 (feature -> reason). A disagreement with h11 is
# accepted only for a response that has the feature.
DIFFERENCES: dict[str, str] = {
    "obs_fold": "obsolete line folding is rejected (malformed): the contract says so, and a folded "
    "Content-Length/Transfer-Encoding is a request-smuggling vector; h11 unfolds it",
    "cl_list": "a comma list in one Content-Length field ('3, 3') is rejected; RFC 9110 §8.6 lets a "
    "recipient either reject it or collapse it (h11 collapses)",
    "te_not_chunked": "a response whose last transfer coding is not chunked is read until close "
    "(RFC 9112 §6.3 item 4 for responses); h11 refuses any coding but chunked",
    "bare_lf_chunk": "a bare LF ends chunk-size, chunk-data and trailer lines as well as header lines "
    "(RFC 9112 §2.2 lets a recipient accept a bare LF); h11 accepts it in the head only",
    "trailer_lines": "trailer lines are skipped up to the empty line, not parsed (they never matter to "
    "the framing, and the contract discards them); h11 parses them as header fields",
    "chunk_ext_bws": "whitespace before a chunk extension's ';' is accepted: RFC 9112 §7.1.1 allows BWS "
    'there (chunk-ext = *( BWS ";" BWS chunk-ext-name ...)); h11 rejects it',
    "http_version": "any HTTP/d.d version is framed as HTTP/1.1 (the engine only speaks HTTP/1); "
    "h11 rejects versions other than 1.x",
}

Outcome = tuple[str, int, int]  # ("ok", code, bytes of the first response) or ("reject", 0, 0)
REJECT: Outcome = ("reject", 0, 0)


# --- the three parsers ----------------------------------------------------------------------------
def by_c(data: bytes) -> Outcome:
    status, code, _hb, consumed, close_delim, _keep = core._fuzz_parse(data, False, 0)
    if status == "done":
        return ("ok", code, consumed)
    if status == "more" and close_delim:
        return ("ok", code, len(data))  # the peer closed: that is the end of the body
    return REJECT


def by_py(data: bytes) -> Outcome:
    async def go() -> Outcome:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        try:
            resp = await read_response(_Wire(reader), False)
        except CallError as exc:
            assert exc.kind in ("malformed", "eof"), exc.kind
            return REJECT
        return ("ok", resp.code, resp.total_size)

    return asyncio.run(go())


def by_h11(data: bytes) -> Outcome:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    code = 0
    try:
        while True:
            ev = conn.next_event()
            if isinstance(ev, h11.Response):
                code = ev.status_code
            elif isinstance(ev, h11.EndOfMessage):
                rest, _closed = conn.trailing_data
                return ("ok", code, len(data) - len(rest))
            elif ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
                return REJECT
    except h11.RemoteProtocolError:
        return REJECT


# --- generating responses ---------------------------------------------------------------------------
GOOD_STATUS = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 503 Busy",
    b"HTTP/1.1 200",
    b"HTTP/1.1 418 I'm a teapot",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 302 Found",
]
BAD_STATUS = [
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 200OK",
    b"XTTP/1.1 200 OK",
    b"HTTP/1.1 2x0 OK",
    b"http/1.1 200 OK",
    b"HTTP/1.1  200 OK",
    b"HTTP/1 200 OK",
    b" HTTP/1.1 200 OK",
    b"HTTP/1.1 099 Low",
]


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, frozenset[str]]:
    feats: set[str] = set()
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n"]))
    status = draw(st.sampled_from(GOOD_STATUS * 3 + BAD_STATUS))
    if draw(st.booleans()) and draw(st.booleans()):
        status = draw(st.sampled_from([b"HTTP/2.0 200 OK", b"HTTP/3.1 200 OK"]))
        feats.add("http_version")
    interim = draw(st.sampled_from([b"", b"", b"", b"HTTP/1.1 100 Continue" + eol + eol]))
    lines: list[bytes] = []
    framing = draw(st.sampled_from(["cl", "cl", "chunked", "close", "both", "te_other"]))
    body_len = draw(st.integers(0, 40))
    body = b"b" * body_len
    if framing in ("cl", "both"):
        n_cl = draw(st.integers(1, 2))
        delta = draw(st.sampled_from([0, 0, 0, -1, 1, 5]))
        cl = max(0, body_len + delta)
        val = draw(
            st.sampled_from([b"%d" % cl, b"%d" % cl, b"0%d" % cl, b"%d, %d" % (cl, cl), b"+%d" % cl, b"x"])
        )
        if b"," in val:
            feats.add("cl_list")
        for i in range(n_cl):
            v = val if i == 0 else draw(st.sampled_from([val, b"%d" % (cl + 1)]))
            lines.append(b"Content-Length:" + draw(st.sampled_from([b" ", b"", b"  ", b"\t"])) + v)
    if framing in ("chunked", "both"):
        lines.append(
            b"Transfer-Encoding: " + draw(st.sampled_from([b"chunked", b"Chunked", b"gzip, chunked"]))
        )
        if b"gzip" in lines[-1]:
            feats.add("te_not_chunked")  # h11 refuses gzip even before chunked
    if framing == "te_other":
        lines.append(b"Transfer-Encoding: " + draw(st.sampled_from([b"gzip", b"chunked, gzip"])))
        feats.add("te_not_chunked")
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([b"X-A", b"Server", b"Connection", b"x-envoy-overloaded", b"Date"]))
        value = draw(st.sampled_from([b"v", b"close", b"keep-alive", b"a, b", b"", b"true"]))
        sep = draw(st.sampled_from([b": ", b":", b":  ", b" : ", b":\t"]))
        lines.insert(draw(st.integers(0, len(lines))), name + sep + value)
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), b" folded continuation")
        feats.add("obs_fold")
    head = interim + status + eol + b"".join(ln + eol for ln in lines) + eol
    if framing in ("chunked", "both"):
        chunks = draw(st.lists(st.integers(1, 20), max_size=3))
        ceol = draw(st.sampled_from([b"\r\n"] * 5 + [b"\n"]))
        if ceol == b"\n":
            feats.add("bare_lf_chunk")
        parts = []
        for size in chunks:
            size_txt = draw(
                st.sampled_from(
                    [
                        b"%x" % size,
                        b"%X" % size,
                        b"%x;ext=1" % size,
                        b"%x ;e" % size,
                        b"%x  " % size,
                        b"-%x" % size,
                        b"%xg" % size,
                        b"0x%x" % size,
                    ]
                )
            )
            if size_txt.endswith(b" ;e"):
                feats.add("chunk_ext_bws")
            data = b"c" * size
            term = draw(st.sampled_from([ceol, ceol, ceol, b"", b"XX"]))
            parts.append(size_txt + ceol + data + term)
        last = draw(
            st.sampled_from([b"0" + ceol + ceol, b"0;end" + ceol + b"X-T: 1" + ceol + ceol, b"0" + ceol, b""])
        )
        body = b"".join(parts) + last
        if last == b"0" + ceol:
            feats.add("trailer_lines")  # whatever follows is read as trailer lines
    tail = draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"junk"]))
    return head + body + tail, frozenset(feats)


def compare(data: bytes, feats: frozenset[str]) -> tuple[Outcome, Outcome]:
    c = by_c(data)
    py = by_py(data)
    assert c == py, f"C and Python parsers disagree on {data!r}: C {c}, py {py}"
    h = by_h11(data)
    if c != h:
        assert feats & set(DIFFERENCES), f"engines {c} but h11 {h} on {data!r} (features {set(feats)})"
    return c, h


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_parsers_agree_with_h11(case: tuple[bytes, frozenset[str]]) -> None:
    compare(*case)


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", ("ok", 200, 37)),  # bare LF in the head: all accept
        (b"HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n", ("ok", 200, 58)),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 zz\r\nhello\r\n0\r\n\r\n", REJECT),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", REJECT),
        (b"<html>", REJECT),
    ],
)
def test_fixed_cases(data: bytes, expect: Outcome) -> None:
    """Cases the differential run found or that pin a decision (see docs/bad-inputs.md)."""
    c, h = compare(data, frozenset())
    assert c == expect and h == expect


def test_connection_token_not_substring() -> None:
    """``Connection: closed`` is not ``close`` (the C parser used to match substrings)."""
    keep = core._fuzz_parse(b"HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n")[5]
    close = core._fuzz_parse(b"HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 0\r\n\r\n")[5]
    assert keep is True and close is False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=responses())
def test_engines_over_sockets_agree(engine: ModuleType, case: tuple[bytes, frozenset[str]]) -> None:
    """The same bytes through a scripted server (then close) to a real engine run."""
    data, _feats = case
    expect = by_c(data)
    srv = ScriptedServer(lambda q: [data, CLOSE]).start()
    try:
        r = run(engine, make_cfg(srv.port, n=1, c=1, timeout_s=2.0))
    finally:
        srv.stop()
    if expect == REJECT:
        assert r.codes == {-1: 1} and set(r.errors) <= {"malformed", "eof"}, (data, r.errors)
    else:
        assert r.codes == {expect[1]: 1}, (data, r.codes, r.errors)
        assert r.total_size.max == expect[2], data
