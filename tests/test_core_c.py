"""C-engine specific tests (:mod:`loadgen._core`): byte-level framing across reads, limits, timers.

The shared behavioural suite (``test_engines.py``) runs the contract on every engine; this file
covers what can only go wrong in C: a parser fed one byte per read, header blocks growing to the
1 MiB limit, the index math copied from ``hdrh`` and ``recorder``, the per-thread slot heap and
``epoll_pwait2`` pacing, per-thread merging, and stop/abort from another thread. Every server
here is a small raw-socket thread on 127.0.0.1 (port 0) started and stopped by the test.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loadgen.engine_api import ERROR_KINDS, EngineConfig, EngineResult, is_ok
from loadgen.errors import UsageError
from loadgen.recorder import HDR_HIGHEST, TIMELINE_BUCKETS, new_hdr, timeline_index
from loadgen.schedule import plan

core = pytest.importorskip("loadgen._core", reason="C engine not built")

pytestmark = pytest.mark.timeout(60)


# --- a scripted raw-socket server ----------------------------------------------------------
# The script maps the request number (server-wide, from 0) to a list of steps:
#   bytes: sent in one sendall (or one byte per send, with a pause, when ``bytewise``)
#   float: pause that many seconds;  "close": FIN;  "hang": never answer
Step = bytes | float | str


@dataclass
class RawServer:
    script: Callable[[int], list[Step]]
    bytewise: bool = False
    requests: list[bytes] = field(default_factory=list)
    conns: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port: int = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.clients: list[socket.socket] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self.lock:
                self.conns += 1
                self.clients.append(c)
            th = threading.Thread(target=self._serve, args=(c,), daemon=True)
            th.start()
            self.threads.append(th)

    def _serve(self, c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(0.2)
        buf = b""
        try:
            while not self.stopping.is_set():
                while b"\r\n\r\n" not in buf:
                    try:
                        data = c.recv(65536)
                    except TimeoutError:
                        if self.stopping.is_set():
                            return
                        continue
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    number = len(self.requests)
                    self.requests.append(head)
                for step in self.script(number):
                    if isinstance(step, bytes):
                        if self.bytewise:
                            for i in range(len(step)):
                                c.sendall(step[i : i + 1])
                                time.sleep(0.0003)
                        else:
                            c.sendall(step)
                    elif isinstance(step, float):
                        time.sleep(step)
                    elif step == "close":
                        return
                    elif step == "hang":
                        self.stopping.wait(30)
                        return
        except OSError:
            return
        finally:
            c.close()

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()
        self.acceptor.join(2)
        for th in self.threads:
            th.join(2)


@pytest.fixture
def server() -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def make(script: Callable[[int], list[Step]], bytewise: bool = False) -> RawServer:
        s = RawServer(script, bytewise=bytewise)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def cfg_for(
    port: int,
    *,
    c: int = 1,
    n: int = 0,
    qps: float = 0.0,
    duration: float = 0.0,
    method: str = "GET",
    **kw: object,
) -> EngineConfig:
    p = plan(c, qps, duration, n, bool(kw.pop("uniform", False)))
    req = f"{method} / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    base = dict(
        host="127.0.0.1",
        port=port,
        request=req,
        head=method == "HEAD",
        connections=p.connections,
        qps=qps,
        calls=p.calls,
        offsets=p.offsets,
        stretch=p.stretch,
        end_s=p.end_s,
        timeout_s=2.0,
    )
    base.update(kw)
    return EngineConfig(**base)  # type: ignore[arg-type]


def run(cfg: EngineConfig, limit: float = 20.0) -> EngineResult:
    h = core.start(cfg)
    if not h.wait(limit):
        h.abort()
        h.wait(5)
        pytest.fail(f"the C engine did not finish within {limit}s")
    res: EngineResult = h.result()
    return res


def consistent(r: EngineResult) -> None:
    """Invariants: HDR totals and timeline sums equal the call counts, errors match code -1."""
    n = r.count
    assert sum(r.calls_done) == n
    for rec in (r.latency, r.service, r.header_size, r.total_size):
        assert rec.count == n and rec.hdr.get_total_count() == n
    non_ok = sum(v for k, v in r.codes.items() if not is_ok(k))
    assert r.error_service.count == r.error_service.hdr.get_total_count() == non_ok
    assert r.connect_time.count == r.connect_time.hdr.get_total_count() == sum(r.sockets)
    assert sum(r.errors.values()) == r.codes.get(-1, 0)
    assert set(r.errors) <= set(ERROR_KINDS)
    assert sum(s.requests for s in r.timeline) == n
    assert sum(sum(s.latency) for s in r.timeline) == n
    assert sum(s.errors for s in r.timeline) == r.codes.get(-1, 0)
    assert [s.t for s in r.timeline] == list(range(len(r.timeline)))
    merged: dict[int, int] = {}
    for s in r.timeline:
        for k, v in s.codes.items():
            merged[k] = merged.get(k, 0) + v
    assert merged == r.codes
    if n:
        assert r.latency.min >= r.service.min and r.latency.sum >= r.service.sum


def resp(code: int = 200, body: bytes = b"hello", *extra: str) -> bytes:
    head = f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\n" + "".join(h + "\r\n" for h in extra)
    return head.encode() + b"\r\n" + body


# --- index math is identical to the Python side --------------------------------------------
def test_timeline_index_matches_recorder() -> None:
    rng = random.Random(7)
    values = [0, 1, 31, 32, 33, 47, 48, 63, 64, 65, 1000, 2**31, 2**32 - 1, 2**32, 2**40, -5]
    values += [rng.randrange(0, 2**34) for _ in range(2000)] + [rng.randrange(0, 5000) for _ in range(2000)]
    for v in values:
        assert core._timeline_index(v) == timeline_index(v), v
    assert max(core._timeline_index(v) for v in values) == TIMELINE_BUCKETS - 1


def test_hdr_index_matches_hdrh() -> None:
    h = new_hdr()
    rng = random.Random(3)
    values = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 10**6, HDR_HIGHEST]
    values += [rng.randrange(0, HDR_HIGHEST) for _ in range(3000)] + [
        rng.randrange(0, 10**5) for _ in range(2000)
    ]
    for v in values:
        assert core._hdr_index(v) == h._counts_index_for(v), v


# --- framing with one byte per read --------------------------------------------------------
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5;name=value;x="q"\r\nhello\r\n1A\r\n' + b"z" * 26 + b"\r\n0;last\r\nX-Trailer: 1\r\nX-T2: 2\r\n\r\n"
)
FRAMINGS: dict[str, tuple[list[Step], int, int, int]] = {
    # name: (steps, code, header_size, sockets for 3 calls)
    "content-length": ([resp(200, b"0123456789")], 200, len(resp(200, b"0123456789")) - 10, 1),
    "chunked-ext-trailers": ([CHUNKED], 200, CHUNKED.index(b"\r\n\r\n") + 4, 1),
    "1xx-first": (
        [b"HTTP/1.1 100 Continue\r\n\r\n", resp(201, b"abc")],
        201,
        len(b"HTTP/1.1 100 Continue\r\n\r\n") + len(resp(201, b"abc")) - 3,
        1,
    ),
    "204-no-cl": (
        [b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"],
        204,
        len(b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"),
        1,
    ),
    "204-cl-0": (
        [b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"],
        204,
        len(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
        1,
    ),
    "close-delimited": (
        [b"HTTP/1.1 200 OK\r\nX-Y: z\r\n\r\nbody until close", "close"],
        200,
        len(b"HTTP/1.1 200 OK\r\nX-Y: z\r\n\r\n"),
        3,
    ),
    "connection-close": (
        [resp(200, b"bye", "Connection: Close"), "close"],
        200,
        len(resp(200, b"bye", "Connection: Close")) - 3,
        3,
    ),
    "http10-no-keepalive": (
        [b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "close"],
        200,
        len(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"),
        3,
    ),
    "case-insensitive": (
        [b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:   3  \r\nX-ENVOY-OVERLOADED: true\r\n\r\nabc"],
        200,
        len(b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:   3  \r\nX-ENVOY-OVERLOADED: true\r\n\r\n"),
        1,
    ),
}


@pytest.mark.parametrize("name", sorted(FRAMINGS))
def test_framing_byte_by_byte(server: Callable[..., RawServer], name: str) -> None:
    steps, code, head_size, sockets = FRAMINGS[name]
    srv = server(lambda i: steps, bytewise=True)
    r = run(cfg_for(srv.port, n=3))
    assert r.codes == {code: 3}, r.errors
    assert r.errors == {} and r.retries == 0
    assert r.sockets == [sockets]
    assert r.header_size.min == r.header_size.max == head_size
    wire = sum(len(s) for s in steps if isinstance(s, bytes))
    assert r.total_size.min == r.total_size.max == wire
    assert r.overloaded == ({200: 3} if name == "case-insensitive" else {})
    assert len(srv.requests) == 3
    consistent(r)


def test_head_ignores_content_length(server: Callable[..., RawServer]) -> None:
    # a HEAD response announces a body it does not send; the next response must parse cleanly
    srv = server(lambda i: [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"], bytewise=True)
    r = run(cfg_for(srv.port, n=3, method="HEAD"))
    assert r.codes == {200: 3} and r.sockets == [1]
    assert srv.requests[0].startswith(b"HEAD / ")
    consistent(r)


def test_big_chunked_body_across_many_reads(server: Callable[..., RawServer]) -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (n, b"q" * n) for n in (1, 70000, 3, 65536, 200000)) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    srv = server(lambda i: [head + body])
    r = run(cfg_for(srv.port, n=4, c=2))
    assert r.codes == {200: 4} and r.sockets == [1, 1]
    assert r.total_size.max == len(head) + len(body)
    consistent(r)


# --- limits and malformed input ------------------------------------------------------------
def test_header_block_just_under_limit_is_fine(server: Callable[..., RawServer]) -> None:
    filler = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(1000))  # ~1.0 MB
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + filler + b"\r\n"
    assert len(head) < 1 << 20
    srv = server(lambda i: [head[:5000], 0.01, head[5000:] + b"ok"])
    r = run(cfg_for(srv.port, n=2))
    assert r.codes == {200: 2} and r.errors == {}
    assert r.header_size.min == len(head)
    consistent(r)


def test_header_block_over_1mib_is_malformed(server: Callable[..., RawServer]) -> None:
    filler = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(1100))  # > 1 MiB, never ends
    srv = server(lambda i: [b"HTTP/1.1 200 OK\r\n", filler, "hang"])
    r = run(cfg_for(srv.port, n=1, timeout_s=5.0))
    assert r.codes == {-1: 1} and r.errors == {"malformed": 1}
    assert r.service.max < 4e9  # decided by the limit, not by the timeout
    consistent(r)


@pytest.mark.parametrize(
    "bad",
    [
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 000 Zero\r\n\r\n",
        b"HTTX/1.1 200 OK\r\n\r\n",
        b"garbage garbage garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
    ],
)
def test_malformed_responses(server: Callable[..., RawServer], bad: bytes) -> None:
    srv = server(lambda i: [bad, "hang"])
    r = run(cfg_for(srv.port, n=2, timeout_s=3.0))
    assert r.codes == {-1: 2} and r.errors == {"malformed": 2}
    assert r.sockets == [2]  # the socket is closed after an error
    assert r.service.max < 2.5e9
    consistent(r)


def test_eof_mid_body_is_an_error_not_a_retry(server: Callable[..., RawServer]) -> None:
    srv = server(
        lambda i: [
            resp(200, b"ok") if i == 0 else b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
            *([] if i == 0 else ["close"]),
        ]
    )
    r = run(cfg_for(srv.port, n=2))
    assert r.codes == {200: 1, -1: 1} and r.errors == {"eof": 1} and r.retries == 0
    consistent(r)


def test_idle_close_race_is_retried(server: Callable[..., RawServer]) -> None:
    # keep-alive response, then the server closes at once: the next write on the reused socket
    # fails or reads EOF before any byte, which must be retried on a new socket without an error
    srv = server(lambda i: [resp(200, b"ok"), "close"])
    r = run(cfg_for(srv.port, n=6))
    assert r.codes == {200: 6} and r.errors == {}
    assert sum(r.sockets) == 6
    consistent(r)


def test_request_timeout(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: ["hang"])
    r = run(cfg_for(srv.port, n=2, c=2, timeout_s=0.3))
    assert r.errors == {"timeout": 2} and r.codes == {-1: 2}
    assert r.service.min >= 0.29e9 and r.service.max < 1.0e9
    consistent(r)


def test_refused_closed_loop_does_not_recurse() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = run(cfg_for(port, n=3000, c=3))
    assert r.codes == {-1: 3000} and r.errors == {"connect_refused": 3000}
    assert r.sockets == [0, 0, 0] and r.connect_time.count == 0
    consistent(r)


# --- many connections, threads, merging -----------------------------------------------------
def test_many_connections_two_threads_merge(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: [resp(200 if i % 5 else 503, b"x" * (i % 7))])
    r = run(cfg_for(srv.port, n=1500, c=150, threads=2))
    assert r.count == 1500 and len(srv.requests) == 1500
    assert r.codes[503] == 300 and r.codes[200] == 1200
    assert r.calls_done == list(plan(150, 0, 0, 1500, False).calls)
    # a non-OK status closes the socket (a 503 as a connection's last call opens nothing more)
    assert 150 + 300 - 150 <= sum(r.sockets) <= 150 + 300
    consistent(r)


def test_access_log_lines(server: Callable[..., RawServer], tmp_path: Path) -> None:
    srv = server(lambda i: [resp(200 if i % 2 else 418)])
    log = tmp_path / "access.jsonl"
    log.write_text("stale line\n")
    r = run(cfg_for(srv.port, n=40, c=4, threads=2, access_log_path=str(log)))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 40 == r.count
    assert {x["thread"] for x in lines} == {0, 1, 2, 3}
    for j in range(4):
        assert sorted(x["iter"] for x in lines if x["thread"] == j) == list(range(10))
    assert all(x["ok"] is True and x["details"] in ("200", "418") for x in lines)
    assert all(0 <= x["latency"] < 2 and abs(x["timestamp"] / 1e9 - r.start_wall) < 30 for x in lines)


# --- pacing ---------------------------------------------------------------------------------
def test_qps_pacing_accuracy(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: [resp(200)])
    t0 = time.monotonic()
    r = run(cfg_for(srv.port, c=4, qps=200, duration=1.0, threads=2, uniform=True))
    wall = time.monotonic() - t0
    assert 198 <= r.count <= 202
    assert r.codes == {200: r.count}
    assert 0.95e9 <= r.elapsed_ns <= 1.5e9 and wall < 3.0  # upper bounds: slack for a shared machine
    assert r.sleep_count == r.count
    assert r.late <= r.count // 10
    assert r.latency.percentile(50) < 20e6  # ns; loopback with a thread-per-connection server
    assert r.latency.min >= r.service.min
    # per-second counts near 200 (the last second holds only the final stretched slots)
    assert r.timeline[0].requests >= 180
    consistent(r)


def test_nocatchup_skips_late_slots(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: [0.05, resp(200)])  # 50 ms per call at 100 qps on one connection
    r = run(cfg_for(srv.port, c=1, qps=100, duration=1.0, catchup=False))
    assert r.skipped > 30
    assert 95 <= r.count + r.skipped <= 100  # slots at/after the end are neither sent nor skipped
    assert r.late == 0  # skipping means never sending late
    consistent(r)


def test_catchup_measures_lateness(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: [0.03 if i < 3 else 0.0, resp(200)])  # a slow start, then fast
    r = run(cfg_for(srv.port, c=1, qps=100, duration=0.5))
    assert r.count == 50 and r.skipped == 0
    assert r.late >= 3
    assert r.latency.max > r.service.max  # latency from the intended time includes the lateness
    consistent(r)


# --- stop / abort ---------------------------------------------------------------------------
def test_stop_during_unlimited_run(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: [resp(200)])
    h = core.start(cfg_for(srv.port, c=8, threads=2, duration=0.0))
    time.sleep(0.3)
    p = h.progress()
    assert p.done > 0 and p.errors == 0
    t0 = time.monotonic()
    h.stop()
    assert h.wait(5)
    assert time.monotonic() - t0 < 2.0
    r = h.result()
    assert r.interrupted and r.aborted_on is None
    assert r.codes == {200: r.count} and r.count >= p.done
    assert r.abandoned == 0
    consistent(r)


def test_abort_abandons_in_flight(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: ["hang"])
    h = core.start(cfg_for(srv.port, c=5, threads=2, duration=0.0, timeout_s=10.0))
    time.sleep(0.2)
    t0 = time.monotonic()
    h.abort()
    assert h.wait(3) and time.monotonic() - t0 < 1.0
    r = h.result()
    assert r.interrupted and r.count == 0 and r.abandoned == 5
    consistent(r)


def test_abort_on_code_stops_every_thread(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: [resp(503 if i == 50 else 200)])
    r = run(cfg_for(srv.port, c=4, threads=2, duration=0.0, abort_on=503))
    assert r.aborted_on == 503 and not r.interrupted
    assert r.codes[503] == 1 and r.count < 200
    consistent(r)


def test_result_before_end_raises(server: Callable[..., RawServer]) -> None:
    srv = server(lambda i: [resp(200)])
    h = core.start(cfg_for(srv.port, c=2, duration=0.0))
    with pytest.raises(Exception, match="still running"):
        h.result()
    h.abort()
    assert h.wait(3)


def test_bad_config() -> None:
    with pytest.raises(UsageError):
        core.start(cfg_for(80, n=1, host="localhost"))
    with pytest.raises(UsageError):
        core.start(cfg_for(80, n=2, c=2, calls=(1,)))


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        ls.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this host")
    ls.listen(8)
    port = ls.getsockname()[1]
    answer = resp(200, b"six")

    def serve() -> None:
        c, _ = ls.accept()
        with c:
            for _ in range(3):
                buf = b""
                while b"\r\n\r\n" not in buf:
                    data = c.recv(4096)
                    if not data:
                        return
                    buf += data
                c.sendall(answer)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        r = run(cfg_for(port, n=3, host="::1"))
    finally:
        th.join(5)
        ls.close()
    assert r.codes == {200: 3} and r.sockets == [1]
    consistent(r)


def test_connect_timeout_on_full_backlog() -> None:
    # a listener that never accepts, with a backlog of 0: Linux queues one connection and drops
    # the other SYNs, so those connects never complete and must time out
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    try:
        r = run(cfg_for(ls.getsockname()[1], n=4, c=4, timeout_s=0.3))
    finally:
        ls.close()
    assert r.count == 4 and r.codes == {-1: 4}
    assert r.errors.get("connect_timeout", 0) >= 2
    assert set(r.errors) <= {"connect_timeout", "timeout"}
    assert r.connect_time.count == sum(r.sockets) == r.errors.get("timeout", 0)
    assert r.service.min >= 0.29e9 and r.service.max < 1.5e9
    consistent(r)
