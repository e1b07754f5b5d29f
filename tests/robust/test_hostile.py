"""Hostile servers: every case on both HTTP/1 engines (``engine`` fixture: "py" and "c").

Each case scripts a misbehaving server on 127.0.0.1, runs a bounded load and asserts the
outcome the engine contract (:mod:`loadgen.engine_api`) and RFC 9112 call for, as named error
counts (``EngineResult.errors[kind]``); that the run ends within its time bound (never a hang
past ``timeout_s``); that nothing crashed (``result()`` returned, the counts are consistent);
and that the process's open file descriptors are back where they started once the server has
stopped. The decided outcome of every case, with its reason, is in ``docs/bad-inputs.md``
("Hostile servers") and in each test's docstring.

What this is not: the framing corner cases of well-behaved servers (``tests/test_engines.py``)
or the byte-level grammar (``tests/robust/test_differential.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from servers import CLOSE, HANG, RESET, Request, ScriptedServer, Sleep, Step, make_cfg, response, run

from loadgen.engine_api import EngineResult, is_ok

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def nfds() -> int:
    return len(os.listdir("/proc/self/fd"))


def consistent(r: EngineResult) -> None:
    n = r.count
    assert sum(r.calls_done) == n
    assert r.latency.count == n and r.service.count == n
    assert sum(r.errors.values()) == r.codes.get(-1, 0)
    assert r.error_service.count == sum(v for k, v in r.codes.items() if not is_ok(k))
    assert sum(s.requests for s in r.timeline) == n


def hostile(
    engine: ModuleType,
    script: Callable[[Request], list[Step]],
    *,
    n: int = 2,
    timeout_s: float = 1.0,
    limit: float | None = None,
    on_accept: Callable[[int], bool] = lambda conn: True,
    **kw: Any,
) -> tuple[EngineResult, float]:
    """Run ``n`` calls (one connection) against ``script``; returns (result, seconds).

    Asserts the run ended within ``limit`` (default: every call timing out, plus slack), the
    result is consistent, and the fd count is back to its start value after the server stopped.
    """
    before = nfds()
    srv = ScriptedServer(script, on_accept=on_accept).start()
    try:
        t0 = time.monotonic()
        bound = limit if limit is not None else n * timeout_s + 3.0
        r = run(engine, make_cfg(srv.port, n=n, c=1, timeout_s=timeout_s, **kw), limit=bound)
        took = time.monotonic() - t0
    finally:
        srv.stop()
    assert r.count == n
    consistent(r)
    deadline = time.monotonic() + 2.0
    while nfds() != before and time.monotonic() < deadline:  # server threads finish closing
        time.sleep(0.01)
    assert nfds() == before, f"fd leak: {before} -> {nfds()}"
    return r, took


HEAD_CL100 = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


# --- resets, closes, silence --------------------------------------------------------------------
def test_reset_in_headers(engine: ModuleType) -> None:
    """RST after half a header block: ``reset`` (a fresh socket is never retried)."""
    r, _ = hostile(engine, lambda q: [b"HTTP/1.1 200 OK\r\nContent-Le", Sleep(0.01), RESET])
    assert r.errors == {"reset": 2} and r.retries == 0


def test_reset_in_body(engine: ModuleType) -> None:
    r, _ = hostile(engine, lambda q: [HEAD_CL100 + b"partial", Sleep(0.01), RESET])
    assert r.errors == {"reset": 2} and r.retries == 0


def test_eof_in_headers(engine: ModuleType) -> None:
    r, _ = hostile(engine, lambda q: [b"HTTP/1.1 200 OK\r\nX: y\r\n", CLOSE])
    assert r.errors == {"eof": 2}


def test_accept_and_never_answer(engine: ModuleType) -> None:
    """Accepts, reads the request, says nothing: ``timeout`` at timeout_s for each call."""
    r, took = hostile(engine, lambda q: [HANG], timeout_s=0.5)
    assert r.errors == {"timeout": 2}
    assert 0.95 <= took < 2.0
    assert r.service.min >= 0.45e9


def test_accept_and_close_at_once(engine: ModuleType) -> None:
    """Closed before reading: FIN (``eof``) or, when our request was already queued, RST
    (``reset``): which one is the kernel's race, both are named errors, never a retry."""
    r, _ = hostile(engine, lambda q: [], on_accept=lambda conn: False, n=3)
    assert set(r.errors) <= {"eof", "reset"} and sum(r.errors.values()) == 3
    assert r.retries == 0


def test_slowloris_one_byte_a_second(engine: ModuleType) -> None:
    """One byte a second: the timeout bounds the whole response, not each read."""

    def drip(q: Request) -> list[Step]:
        steps: list[Step] = []
        for b in response(200, b"x" * 10):
            steps += [bytes([b]), Sleep(1.0)]
        return steps

    r, took = hostile(engine, drip, n=1, timeout_s=1.5)
    assert r.errors == {"timeout": 1}
    assert 1.4 <= took < 2.5


# --- not HTTP/1.x ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "status_line",
    [
        b"SPDY/9 nope",
        b"HTTP/1.1 2OO OK",
        b"HTTP/1.1 099 Low",
        b"HTTP/1.1  200 OK",
        b"HTTP/11 200 OK",
        b"\x00\xff",
    ],
)
def test_garbage_status_line(engine: ModuleType, status_line: bytes) -> None:
    r, _ = hostile(engine, lambda q: [status_line + b"\r\nContent-Length: 0\r\n\r\n"])
    assert r.errors == {"malformed": 2}


@pytest.mark.parametrize("then", [CLOSE, HANG])
def test_http09_reply(engine: ModuleType, then: str) -> None:
    """A body without a status line (HTTP/0.9 style): ``malformed`` as soon as the first bytes
    cannot start ``HTTP/`` — not ``eof`` at close, and not a ``timeout`` when the server then
    keeps the connection open (RFC 9112 has no HTTP/0.9; h11 rejects it too)."""
    r, took = hostile(engine, lambda q: [b"<html>hello</html>\n", then], timeout_s=2.0)
    assert r.errors == {"malformed": 2}
    assert took < 1.5  # two calls, no timeout waited


def test_bare_lf_line_ends(engine: ModuleType) -> None:
    """LF instead of CRLF everywhere (RFC 9112 §2.2: a recipient MAY accept it; h11 does in the
    head): both engines frame it exactly (the Python engine used to wait for CRLF CRLF)."""
    resp = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n"
    r, _ = hostile(engine, lambda q: [resp], n=3)
    assert r.codes == {200: 3} and r.errors == {}
    assert r.total_size.max == len(resp) and r.sockets == [1]


# --- big heads --------------------------------------------------------------------------------------
def test_header_block_over_64k_is_fine(engine: ModuleType) -> None:
    """100 KB of headers: more than one 64 KiB read, under the 1 MiB limit: a normal 200."""
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n"
    r, _ = hostile(engine, lambda q: [head + b"ok"])
    assert r.codes == {200: 2} and r.errors == {}
    assert r.header_size.max == len(head)


def test_ten_thousand_headers(engine: ModuleType) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
        + b"Content-Length: 2\r\n\r\n"
    )
    r, _ = hostile(engine, lambda q: [head + b"ok"])
    assert r.codes == {200: 2} and r.errors == {}
    assert r.header_size.max == len(head)


def test_header_block_over_1mib_is_malformed(engine: ModuleType) -> None:
    """No blank line within 1 MiB: ``malformed`` (the contract's limit), not a buffer that grows."""
    r, _ = hostile(engine, lambda q: [b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n", HANG])
    assert r.errors == {"malformed": 2}


# --- chunked framing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size_line",
    [
        b"-5\r\n",  # negative
        b"10000000000000000\r\n",  # 2^64: does not fit
        b"8000000000000000\r\n",  # 2^63: would be negative as int64
        b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n",  # > 2^63 by far
        b"zz\r\n",  # not hex
        b"0x5\r\n",  # C-style prefix
        b"5 zz\r\n",  # junk after the size is not an extension
        b"+5\r\n",
        b"\r\n",  # empty
    ],
)
def test_bad_chunk_size(engine: ModuleType, size_line: bytes) -> None:
    """Negative, huge (> 15 hex digits: more than an exabyte), non-hex: ``malformed`` at once,
    never a wait for a body of that size."""
    r, took = hostile(engine, lambda q: [CHUNKED + size_line + b"hello\r\n0\r\n\r\n", HANG], timeout_s=2.0)
    assert r.errors == {"malformed": 2}
    assert took < 1.5


def test_chunk_extensions_and_trailers(engine: ModuleType) -> None:
    body = b'5;name=value;x="q"\r\nhello\r\n3 ; e\r\nabc\r\n0;last\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n'
    r, _ = hostile(engine, lambda q: [CHUNKED + body], n=3)
    assert r.codes == {200: 3} and r.errors == {}
    assert r.total_size.min == r.total_size.max == len(CHUNKED) + len(body)
    assert r.sockets == [1]  # kept alive: the framing was exact


def test_chunked_missing_data_crlf(engine: ModuleType) -> None:
    r, _ = hostile(engine, lambda q: [CHUNKED + b"5\r\nhelloX\r\n0\r\n\r\n"])
    assert r.errors == {"malformed": 2}


# --- Content-Length ----------------------------------------------------------------------------------
def test_content_length_larger_than_body_then_close(engine: ModuleType) -> None:
    r, _ = hostile(engine, lambda q: [HEAD_CL100 + b"only ten b", CLOSE])
    assert r.errors == {"eof": 2}


def test_content_length_larger_than_body_then_silence(engine: ModuleType) -> None:
    r, took = hostile(engine, lambda q: [HEAD_CL100 + b"only ten b", HANG], timeout_s=0.5)
    assert r.errors == {"timeout": 2}
    assert 0.95 <= took < 2.0


def test_content_length_smaller_than_body(engine: ModuleType) -> None:
    """``Content-Length: 3`` with 6 bytes: the response is the first 3 (a 200); the extra bytes
    make the connection untrustworthy, so it is closed, and the next call is clean."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    r, _ = hostile(engine, lambda q: [head + b"abcdef"], n=3)
    assert r.codes == {200: 3} and r.errors == {}
    assert r.total_size.max == len(head) + 3
    assert r.sockets == [3]


@pytest.mark.parametrize(
    ("values", "ok"),
    [((b"3", b"4"), False), ((b"3", b"3"), True), ((b"3, 3",), False), ((b"3", b"03"), True)],
)
def test_two_content_lengths(engine: ModuleType, values: tuple[bytes, ...], ok: bool) -> None:
    """Disagreeing Content-Length values are ``malformed`` (RFC 9112 §6.3 item 5: unrecoverable);
    equal repeated fields are accepted; a comma list in one field is rejected (RFC 9110 §8.6
    allows either; rejecting is the safe side and what the C parser always did)."""
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"Content-Length: " + v + b"\r\n" for v in values) + b"\r\n"
    r, _ = hostile(engine, lambda q: [head + b"abcd"])
    if ok:
        assert r.codes == {200: 2} and r.errors == {}
    else:
        assert r.errors == {"malformed": 2}


@pytest.mark.parametrize("value", [b"\xb2", b"1e3", b"-1", b"0x10", b"9" * 19, b""])
def test_content_length_not_ascii_digits(engine: ModuleType, value: bytes) -> None:
    """Only 1-18 ASCII digits. (``"\\xb2"`` — a superscript two in latin-1 — used to pass
    ``str.isdigit()`` in the Python engine and crash the run with a ValueError.)"""
    r, _ = hostile(engine, lambda q: [b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nab", HANG])
    assert r.errors == {"malformed": 2}


# --- interim responses, bodiless statuses ------------------------------------------------------------
def test_100_continue_before_response(engine: ModuleType) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    ok = response(200, b"hello")
    r, _ = hostile(engine, lambda q: [interim, Sleep(0.01), ok], n=3)
    assert r.codes == {200: 3} and r.errors == {}
    assert r.total_size.max == len(interim) + len(ok)
    assert r.sockets == [1]


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status_with_a_body(engine: ModuleType, code: int) -> None:
    """204/304 never have a body (RFC 9112 §6.3 item 1), whatever Content-Length says; bytes
    after the head are not this response: it counts as ``code``, the connection is closed (the
    stray bytes cannot be framed) and the next call is clean."""
    head = b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % code
    r, _ = hostile(engine, lambda q: [head + b"stray"], n=3)
    assert r.codes == {code: 3} and r.errors == {}
    assert r.total_size.max == len(head)
    assert r.sockets == [3]


# --- a response before the request was fully sent ------------------------------------------------------
class EarlyResponder:
    """Reads a request head, answers at once without reading the body, then either drains the
    body (``drain``: what nginx's lingering close does) or closes immediately."""

    def __init__(self, answer: bytes, drain: bool) -> None:
        self.answer = answer
        self.drain = drain
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except TimeoutError:
                continue
            with c:
                c.settimeout(5)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        break
                    buf += d
                c.sendall(self.answer)
                if self.drain:
                    while c.recv(1 << 20):
                        pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.sock.close()


@pytest.mark.parametrize("drain", [True, False])
def test_response_before_request_sent(engine: ModuleType, drain: bool) -> None:
    """A 16 MB POST answered with 413 after its head. When the server keeps reading (drain),
    the request completes and the 413 is counted. When it closes at once, the engines (which
    watch for an early answer while sending, as RFC 9112 §9.3 asks) race its RST: the 413 when
    they read it first, else a named ``reset``/``eof``; never a hang or a crash. (A server that
    waits before closing, as Envoy does, always gets its answer counted: test_engines.py.)"""
    answer = b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    body = b"x" * (16 << 20)
    before = nfds()
    srv = EarlyResponder(answer, drain)
    try:
        port = srv.port
        req = (
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        t0 = time.monotonic()
        r = run(engine, make_cfg(port, n=2, c=1, timeout_s=5.0, request=req), limit=15)
        took = time.monotonic() - t0
    finally:
        srv.stop()
    assert r.count == 2 and took < 12
    consistent(r)
    if drain:
        assert r.codes == {413: 2} and r.errors == {}
    else:
        assert set(r.codes) <= {413, -1}, r.codes
        assert set(r.errors) <= {"reset", "eof"}, r.errors
    assert nfds() == before


# --- a 1 GB body at bounded memory ----------------------------------------------------------------------
GB_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    import importlib
    from loadgen.engine_api import EngineConfig
    eng = importlib.import_module(sys.argv[2])
    SIZE = 1 << 30
    lsock = socket.socket(); lsock.bind(("127.0.0.1", 0)); lsock.listen(1)
    port = lsock.getsockname()[1]
    def serve():
        c, _ = lsock.accept()
        buf = b""
        while b"\\r\\n\\r\\n" not in buf:
            buf += c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % SIZE)
        block = b"z" * (1 << 20)
        for _ in range(SIZE >> 20):
            c.sendall(block)
        c.recv(1)
        c.close()
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    t = threading.Thread(target=serve, daemon=True); t.start()
    req = b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    before = hwm()
    h = eng.start(EngineConfig(host="127.0.0.1", port=port, request=req, connections=1,
                               calls=(1,), offsets=(0.0,), timeout_s=60.0))
    assert h.wait(90), "did not finish"
    r = h.result()
    print(json.dumps({"codes": r.codes, "errors": r.errors, "total": r.total_size.max,
                      "hwm_delta": hwm() - before}))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_gigabyte_body_bounded_memory(engine: ModuleType) -> None:
    """1 GiB of body is read and discarded: peak RSS grows by far less than the body."""
    proc = subprocess.run(
        [sys.executable, "-c", GB_SCRIPT, str(ROOT), engine.__name__],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["codes"] == {"200": 1} and out["errors"] == {}
    assert out["total"] >= 1 << 30
    assert out["hwm_delta"] < 64 << 20, out  # bounded: the body is never kept
