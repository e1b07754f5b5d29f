"""The pure-Python engine: the readable specification of :mod:`loadgen.engine_api`.

One asyncio event loop in its own thread (so the caller's main thread stays free for signal
handlers) runs one coroutine per logical connection. Every rule of the engine contract is
implemented here in plain Python, in the order the contract states it; the C engine
(``loadgen._core``) is tested against the same behavioural suite.

This module is the engine only: it takes a resolved :class:`EngineConfig` and returns an
:class:`EngineResult`. It does not parse options, render reports or choose engines, and it is not
fast (tens of µs of CPU per request: about 6 k requests/s at c=4 against an in-process test
server); ``cfg.threads`` is ignored (one loop, all connections concurrent).

Layout
    :class:`_Wire`        buffered reads that count every byte and know whether any arrived
    :func:`read_response` HTTP/1.x response framing (1xx, HEAD, 204/304, chunked, length, close)
    :class:`Run`          schedule, stop/abort, recording; ``_call`` does one request and is what
                          :mod:`loadgen._engine_httpx` overrides
    :func:`validate`      the config checks shared with the C engine (:class:`UsageError`)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from loadgen.engine_api import ERROR_KINDS, EngineConfig, EngineResult, Progress, is_ok
from loadgen.errors import RunError, UsageError
from loadgen.recorder import Second, merge_timelines, timeline_index
from loadgen.schedule import next_slot, period_s, slot_time

__all__ = ["Outcome", "Run", "start", "validate"]

MAX_HEAD = 1 << 20  # a header block over 1 MiB is malformed
MAX_CL_DIGITS = 18  # a longer Content-Length is malformed (the C parser's int64 bound)
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line ending a header block (bare LF allowed)
_STATUS = re.compile(rb"HTTP/[0-9]\.[0-9] ([1-9][0-9][0-9])(?: .*)?", re.DOTALL)
# a chunk-size line: 1-15 hex digits, optional whitespace, optional ;extension, (CR)LF
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\n]*|\r?)\n")
READ_CHUNK = 65536
NS = 1_000_000_000


# --- errors inside one call --------------------------------------------------------------
class CallError(Exception):
    """A transport failure of one call: ``kind`` is one of :data:`ERROR_KINDS`.

    ``nbytes`` is how many response bytes had arrived (0 makes a reused connection retryable).
    """

    def __init__(self, kind: str, nbytes: int = 0, head_size: int = 0) -> None:
        assert kind in ERROR_KINDS, kind
        super().__init__(kind)
        self.kind = kind
        self.nbytes = nbytes
        self.head_size = head_size


def kind_of_oserror(exc: BaseException) -> str:
    """Map a socket exception to an error kind (errno first, then the exception class)."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "connect_refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or code in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or code == errno.ETIMEDOUT:
        return "timeout"
    return "other"


# --- reading -----------------------------------------------------------------------------
class _Wire:
    """A read buffer over a StreamReader that counts the bytes of the current response."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buf = bytearray()
        self.nread = 0  # bytes received for the current response (including bytes not consumed yet)
        self.head_size = 0  # header blocks parsed so far (interim 1xx and final)

    async def fill(self) -> bool:
        """Read more bytes; False at EOF. Socket errors become :class:`CallError`."""
        try:
            data = await self.reader.read(READ_CHUNK)
        except OSError as exc:
            raise CallError(kind_of_oserror(exc), self.nread, self.head_size) from exc
        if not data:
            return False
        self.buf += data
        self.nread += len(data)
        return True

    def error(self, kind: str) -> CallError:
        return CallError(kind, self.nread, self.head_size)

    async def take_until(self, sep: bytes, limit: int) -> bytes:
        """Consume and return bytes up to and including ``sep`` (EOF first: ``eof``)."""
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                end = i + len(sep)
                if end > limit:
                    raise self.error("malformed")
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise self.error("malformed")
            start = max(0, len(self.buf) - len(sep) + 1)
            if not await self.fill():
                raise self.error("eof")

    async def take_head(self, limit: int) -> bytes:
        """Consume and return one header block, up to its blank line (``\n\n`` or ``\n\r\n``:
        RFC 9112 §2.2 lets a recipient accept a bare LF, and the C parser does).

        Bytes that cannot start a status line (not a prefix of ``HTTP/``) are ``malformed`` at
        once: an HTTP/0.9-style reply (a body without a status line) fails fast instead of
        waiting for a blank line that never comes (robustness suite: ``test_http09_reply``).
        """
        start = 0
        while True:
            if self.buf[:5] != b"HTTP/"[: len(self.buf)]:
                raise self.error("malformed")
            m = _HEAD_END.search(self.buf, start)
            if m is not None:
                end = m.end()
                if end > limit:
                    raise self.error("malformed")
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise self.error("malformed")
            start = max(0, len(self.buf) - 2)
            if not await self.fill():
                raise self.error("eof")

    async def take(self, n: int) -> None:
        """Consume exactly ``n`` bytes (the body is not kept)."""
        while n > 0:
            if not self.buf and not await self.fill():
                raise self.error("eof")
            k = min(n, len(self.buf))
            del self.buf[:k]
            n -= k

    async def take_all(self) -> None:
        """Consume everything until the peer closes (a close-delimited body)."""
        self.buf.clear()
        while await self.fill():
            self.buf.clear()


@dataclass
class Response:
    """What the engine needs from one response."""

    code: int
    head_size: int  # status lines + headers (1xx interim heads included), each with CRLF CRLF
    total_size: int  # every byte of the response on the wire
    overloaded: bool
    close: bool  # the connection cannot be reused


def _lines(block: bytes) -> list[bytes]:
    """A header block's lines without the blank line: split at LF, one trailing CR dropped."""
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in block.split(b"\n")[:-2]]


def _tokens(value: str) -> set[str]:
    return {t.strip(" \t").lower() for t in value.split(",")}


def _parse_head(block: bytes, wire: _Wire) -> tuple[int, bool, dict[str, str]]:
    """(status, is_http10, headers with lowercase names; repeated names joined by ',').

    The grammar is the C parser's (``parse_head`` in ``_core.pyx``): status line
    ``HTTP/d.d SP [1-9]dd [SP reason]``; field lines ``name:value`` with a non-empty name and no
    whitespace before the colon; obs-fold (a line starting with SP/HTAB) is malformed; every
    Content-Length value is 1-18 digits and all of them agree (a comma list is malformed).
    """
    lines = _lines(block)
    m = _STATUS.fullmatch(lines[0])
    if m is None:
        raise wire.error("malformed")
    headers: dict[str, str] = {}
    clen: str | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or line[:1] in (b" ", b"\t") or name[-1:] in (b" ", b"\t"):
            raise wire.error("malformed")
        key = name.decode("latin-1").lower()
        val = value.strip(b" \t").decode("latin-1")
        if key == "content-length":
            # ASCII digits only: str.isdigit() would accept "\xb2" and int() then raise
            # ValueError inside the engine (robustness suite: test_content_length_not_ascii)
            if not 0 < len(val) <= MAX_CL_DIGITS or not all("0" <= ch <= "9" for ch in val):
                raise wire.error("malformed")
            if clen is not None and int(clen) != int(val):
                raise wire.error("malformed")  # conflicting Content-Length values
            clen = val
        headers[key] = f"{headers[key]},{val}" if key in headers else val
    if clen is not None:
        headers["content-length"] = clen
    return int(m.group(1)), lines[0][5:8] == b"1.0", headers


async def _read_chunked(wire: _Wire) -> None:
    """Consume a chunked body: hex size [;extensions] CRLF data CRLF ... 0 CRLF [trailers] CRLF.

    As in the C parser, a bare LF may replace CRLF, a size has at most 15 hex digits (larger
    sizes are malformed, not a wait for an exabyte), and trailer lines are skipped unparsed
    (their CRs ignored) up to the empty line.
    """
    while True:
        line = await wire.take_until(b"\n", MAX_HEAD)
        m = _CHUNK_SIZE.fullmatch(line)
        if m is None:
            raise wire.error("malformed")
        size = int(m.group(1), 16)
        if size == 0:
            break
        await wire.take(size)
        end = await wire.take_until(b"\n", 2)
        if end not in (b"\r\n", b"\n"):
            raise wire.error("malformed")
    while (await wire.take_until(b"\n", MAX_HEAD)).replace(b"\r", b"") != b"\n":
        pass  # trailers, then the empty line


async def read_response(wire: _Wire, head_request: bool) -> Response:
    """Read one complete response, framing the body as the contract says."""
    while True:
        block = await wire.take_head(MAX_HEAD)
        code, http10, headers = _parse_head(block, wire)
        wire.head_size += len(block)  # interim heads count as header bytes too
        if 100 <= code < 200:
            continue  # interim response (100 Continue, 103 Early Hints...): the real one follows
        break
    conn_tokens = _tokens(headers.get("connection", ""))
    close = "close" in conn_tokens or (http10 and "keep-alive" not in conn_tokens)
    te = headers.get("transfer-encoding")
    if head_request or code in (204, 304):
        pass
    elif te is not None and te.split(",")[-1].strip(" \t").lower() == "chunked":
        await _read_chunked(wire)
    elif te is not None:  # present, even empty: not chunked, the body ends at close
        await wire.take_all()  # unknown transfer coding: the body ends at close
        close = True
    elif "content-length" in headers:
        await wire.take(int(headers["content-length"]))  # validated by _parse_head
    else:
        await wire.take_all()
        close = True
    total = wire.nread - len(wire.buf)
    if wire.buf:
        close = True  # bytes beyond the framed response: the framing cannot be trusted any more
    return Response(code, wire.head_size, total, "x-envoy-overloaded" in headers, close)


def _collect(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


# --- one call's outcome -------------------------------------------------------------------
@dataclass
class Outcome:
    """One recorded call: ``code`` -1 with ``error`` set for transport errors."""

    code: int
    head_size: int = 0
    total_size: int = 0
    overloaded: bool = False
    error: str = ""


@dataclass
class _Conn:
    """A logical connection's socket state."""

    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()  # no lingering half-close; the socket is gone
        self.reader = self.writer = None


class Run:
    """One run of the engine: the schedule, stop/abort, recording and the result.

    Everything except :meth:`stop`, :meth:`abort`, :meth:`progress`, :meth:`wait` and
    :meth:`result` runs on the engine thread's event loop.
    """

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        n = max(1, cfg.connections)
        self.n = n
        self.res = EngineResult(sockets=[0] * n, calls_done=[0] * n)
        self.res.errors = {}
        self._seconds: dict[int, Second] = {}
        self._done = threading.Event()
        self._exc: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_evt: asyncio.Event | None = None
        self._abort_evt: asyncio.Event | None = None
        self._stop_requested = False  # stop()/abort() was called (thread-safe flag)
        self._abort_requested = False
        self._ready = threading.Event()
        self._start_ns = 0
        self._last_ns = 0
        self._stop_ns = 0
        self._n_done = 0
        self._n_err = 0
        self._rng = random.Random(cfg.seed or time.time_ns())
        self._log: IO[str] | None = None
        self._thread = threading.Thread(target=self._thread_main, name="loadgen-py-engine", daemon=True)

    # --- the public handle (any thread) -----------------------------------------------
    def begin(self) -> Run:
        if self.cfg.access_log_path:
            try:
                self._log = open(self.cfg.access_log_path, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise RunError(f"cannot open access log {self.cfg.access_log_path!r}: {exc}") from exc
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self) -> None:
        self._request_stop(abort=False)

    def abort(self) -> None:
        self._request_stop(abort=True)

    def _request_stop(self, abort: bool) -> None:
        if self._done.is_set():
            return
        self._stop_requested = True
        self._abort_requested = self._abort_requested or abort
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: run over anyway
                loop.call_soon_threadsafe(self._on_stop_request)

    def _on_stop_request(self) -> None:
        if self._stop_evt is None or self._abort_evt is None:
            return
        if not self._stop_evt.is_set():
            self._stop_ns = time.monotonic_ns()
        self._stop_evt.set()
        if self._abort_requested:
            self._abort_evt.set()

    def progress(self) -> Progress:
        start = self._start_ns
        if self._done.is_set():
            elapsed = self.res.elapsed_ns / NS
        else:
            elapsed = (time.monotonic_ns() - start) / NS if start else 0.0
        return Progress(done=self._n_done, errors=self._n_err, elapsed_s=elapsed)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self) -> EngineResult:
        if not self._done.is_set():
            raise RunError("engine result requested before the run ended")
        if self._exc is not None:
            raise RunError(f"engine failed: {self._exc!r}") from self._exc
        return self.res

    # --- the engine thread -------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by result(); never lost
            self._exc = exc
        finally:
            self._ready.set()
            if self._log is not None:
                self._log.close()
            self._done.set()

    async def setup(self) -> None:
        """Hook for subclasses (the httpx engine opens its client here)."""

    async def teardown(self) -> None:
        """Hook for subclasses."""

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_evt = asyncio.Event()
        self._abort_evt = asyncio.Event()
        await self.setup()
        try:
            self.res.start_wall = time.time()
            self._start_ns = time.monotonic_ns()
            self._ready.set()
            if self._stop_requested:  # stop() raced with start: honour it
                self._on_stop_request()
            await self._drive()
        finally:
            await self.teardown()
        self._finish()

    async def _drive(self) -> None:
        """Run every connection; on stop, drain for up to ``timeout_s``; on abort, cancel."""
        assert self._stop_evt is not None and self._abort_evt is not None
        tasks = [asyncio.create_task(self._connection(j)) for j in range(self.n)]
        everything = asyncio.ensure_future(asyncio.wait(tasks))
        stop_w = asyncio.ensure_future(self._stop_evt.wait())
        abort_w = asyncio.ensure_future(self._abort_evt.wait())
        try:
            await asyncio.wait({everything, stop_w}, return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                # stopping (stop(), abort() or abort_on): sleeping connections have already
                # returned; in-flight calls get up to timeout_s more unless abort() says now.
                if self._stop_requested:
                    self.res.interrupted = True
                await asyncio.wait(
                    {everything, abort_w}, timeout=self.cfg.timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
                if self._stop_requested:
                    self.res.interrupted = True
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for f in (everything, stop_w, abort_w):
                f.cancel()
            await asyncio.gather(everything, stop_w, abort_w, return_exceptions=True)
        for t in tasks:
            exc = None if t.cancelled() else t.exception()
            if exc is not None:
                raise exc  # a bug in the engine: surface it through result()

    def _finish(self) -> None:
        res = self.res
        end = max(self._last_ns, self._stop_ns)
        res.elapsed_ns = max(0, end - self._start_ns) if end else 0
        res.timeline = merge_timelines([list(self._seconds.values())])

    # --- one connection: the schedule ----------------------------------------------------
    async def _sleep_until(self, deadline_ns: int) -> bool:
        """Sleep until ``deadline_ns`` (monotonic); True if the run is stopping instead."""
        assert self._stop_evt is not None
        delay = (deadline_ns - time.monotonic_ns()) / NS
        if delay > 0 and not self._stop_evt.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_evt.wait(), delay)
        return self._stop_evt.is_set()

    async def _connection(self, j: int) -> None:
        cfg = self.cfg
        assert self._stop_evt is not None
        calls = cfg.calls[j] if j < len(cfg.calls) else -1
        offset_ns = int((cfg.offsets[j] if j < len(cfg.offsets) else 0.0) * NS)
        period = period_s(cfg.qps, self.n)
        end_ns = self._start_ns + int(cfg.end_s * NS) if cfg.end_s > 0 else 0
        base_ns = self._start_ns + offset_ns  # slot k is at base + slot_time(k)
        conn = _Conn()
        k = 0  # next slot (qps mode) == requests started so far + slots skipped
        try:
            while not self._stop_evt.is_set() and (calls < 0 or k < calls):
                now = time.monotonic_ns()
                # fortio lets the last call of a stretched schedule through (it lands on the end)
                last_stretched = cfg.stretch and k == calls - 1
                if end_ns and now >= end_ns and not last_stretched:
                    break
                intended = now
                if cfg.qps > 0:
                    if not cfg.catchup and k > 0:  # slot 0 is the run's start: never skipped
                        k2, _ = next_slot(k, (now - base_ns) / NS, period, calls, cfg.stretch, False)
                        if calls >= 0 and k2 >= calls:
                            self.res.skipped += calls - k
                            break
                        self.res.skipped += k2 - k
                        k = k2
                        last_stretched = cfg.stretch and k == calls - 1
                    slot_ns = base_ns + int(slot_time(k, period, calls, cfg.stretch) * NS)
                    wait = slot_ns - now
                    if k == 0:
                        wait = max(0, wait)  # slot 0 is never late (start-up takes a few µs)
                    if cfg.jitter and wait > 0:  # only a real wait is jittered
                        wait = int(wait * self._rng.uniform(0.9, 1.1))
                    intended = now + wait
                    if end_ns and intended >= end_ns and not last_stretched:
                        break  # that slot is past the end: nothing more to send
                    if wait > 0 and await self._sleep_until(intended):
                        break
                    self._record_sleep(wait)
                try:
                    outcome, t_send = await self._call(j, conn)
                except asyncio.CancelledError:
                    self.res.abandoned += 1  # stop's drain ran out, or abort(): not recorded
                    raise
                k += 1
                self._record(j, outcome, intended, t_send)
        finally:
            conn.close()

    def _record_sleep(self, wait: int) -> None:
        r = self.res
        if r.sleep_count == 0 or wait < r.sleep_min:
            r.sleep_min = wait
        if r.sleep_count == 0 or wait > r.sleep_max:
            r.sleep_max = wait
        r.sleep_count += 1
        r.sleep_sum += wait
        r.sleep_sumsq += float(wait) * float(wait)
        if wait < 0:
            r.late += 1

    # --- one call -------------------------------------------------------------------------
    async def _connect(self, j: int, conn: _Conn) -> None:
        cfg = self.cfg
        t0 = time.monotonic_ns()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(cfg.host, cfg.port, limit=MAX_HEAD * 2), cfg.timeout_s
            )
        except asyncio.TimeoutError:
            raise CallError("connect_timeout") from None
        except OSError as exc:
            kind = kind_of_oserror(exc)
            raise CallError(
                "connect_timeout"
                if kind == "timeout"
                else kind
                if kind in ("connect_refused", "reset")
                else "other"
            ) from exc
        conn.reader, conn.writer = reader, writer
        self.res.sockets[j] += 1
        self.res.connect_time.record(time.monotonic_ns() - t0)

    async def _exchange(self, conn: _Conn, wire: _Wire) -> Response:
        writer = conn.writer
        assert writer is not None
        try:
            writer.write(self.cfg.request)
        except OSError as exc:
            raise CallError(kind_of_oserror(exc), 0) from exc
        if writer.transport.get_write_buffer_size() == 0:  # all sent at once (the usual case)
            return await read_response(wire, self.cfg.head)
        # The rest goes out while the answer is read: a server may answer before taking the whole
        # request (Envoy's circuit-breaker 503 for a large body) and then stop reading.
        drain = asyncio.ensure_future(writer.drain())
        read = asyncio.ensure_future(read_response(wire, self.cfg.head))
        try:
            await asyncio.wait((drain, read), return_when=asyncio.FIRST_COMPLETED)
            if read.done():
                resp = read.result()
                if not drain.done() or drain.cancelled() or drain.exception() is not None:
                    resp.close = True  # the request's rest was never sent: no reuse
                return resp
            try:
                drain.result()
            except OSError as exc:
                raise CallError(kind_of_oserror(exc), wire.nread, wire.head_size) from exc
            return await read
        finally:
            for task in (drain, read):
                task.add_done_callback(_collect)  # no "exception was never retrieved" later
                task.cancel()

    async def _call(self, j: int, conn: _Conn) -> tuple[Outcome, int]:
        """Make one request on ``conn``; returns its outcome and the actual send time (ns).

        Connect time is inside the call. A reused keep-alive socket that fails with eof/reset
        before any response byte is retried once on a new socket, without counting an error.
        """
        cfg = self.cfg
        t_send = time.monotonic_ns()
        retried = False
        while True:
            reused = conn.writer is not None
            wire: _Wire | None = None
            try:
                if conn.writer is None:
                    await self._connect(j, conn)
                assert conn.reader is not None
                wire = _Wire(conn.reader)
                resp = await asyncio.wait_for(self._exchange(conn, wire), cfg.timeout_s)
            except (CallError, asyncio.TimeoutError) as exc:
                conn.close()
                err = (
                    exc
                    if isinstance(exc, CallError)
                    else CallError("timeout", wire.nread if wire else 0, wire.head_size if wire else 0)
                )
                if reused and not retried and err.kind in ("eof", "reset") and err.nbytes == 0:
                    retried = True
                    self.res.retries += 1
                    continue
                return Outcome(-1, err.head_size, err.nbytes, False, err.kind), t_send
            if resp.close or not cfg.keepalive or not is_ok(resp.code):
                conn.close()
            return Outcome(resp.code, resp.head_size, resp.total_size, resp.overloaded), t_send

    # --- recording ------------------------------------------------------------------------
    def _record(self, j: int, o: Outcome, intended_ns: int, send_ns: int) -> None:
        done = time.monotonic_ns()
        res = self.res
        res.codes[o.code] = res.codes.get(o.code, 0) + 1
        latency = done - intended_ns
        res.latency.record(latency)
        res.service.record(done - send_ns)
        if not is_ok(o.code):
            res.error_service.record(done - send_ns)
        res.header_size.record(o.head_size)
        res.total_size.record(o.total_size)
        if o.overloaded:
            res.overloaded[o.code] = res.overloaded.get(o.code, 0) + 1
        if o.error:
            res.errors[o.error] = res.errors.get(o.error, 0) + 1
            self._n_err += 1
        res.calls_done[j] += 1
        self._n_done += 1
        self._last_ns = max(self._last_ns, done)
        # per-second timeline, by completion second
        t = (done - self._start_ns) // NS
        sec = self._seconds.get(t)
        if sec is None:
            sec = self._seconds[t] = Second(t=t)
        sec.requests += 1
        sec.codes[o.code] = sec.codes.get(o.code, 0) + 1
        if o.code == -1:
            sec.errors += 1
        if o.overloaded:
            sec.overloaded += 1
        sec.latency[timeline_index(latency // 1000)] += 1
        if self._log is not None:
            # fortio's fileAccessLogger JSON line: service latency in seconds, send time in unix ns
            wall_send = int(res.start_wall * NS) + (send_ns - self._start_ns)
            self._log.write(
                json.dumps(
                    {
                        "latency": (done - send_ns) / NS,
                        "timestamp": wall_send,
                        "thread": j,
                        "iter": res.calls_done[j] - 1,
                        "ok": is_ok(o.code),
                        "details": str(o.code),
                    }
                )
                + "\n"
            )
        if self.cfg.abort_on and o.code == self.cfg.abort_on and res.aborted_on is None:
            res.aborted_on = o.code
            assert self._stop_evt is not None
            if not self._stop_evt.is_set():
                self._stop_ns = done
            self._stop_evt.set()


def validate(cfg: EngineConfig, *, raw: bool = True) -> None:
    """Reject configs no engine can run (:class:`UsageError`); the C engine checks the same."""
    n = cfg.connections
    if n < 1:
        raise UsageError(f"connections must be >= 1, got {n}")
    if (cfg.calls and len(cfg.calls) != n) or (cfg.offsets and len(cfg.offsets) != n):
        raise UsageError(f"calls/offsets must have one entry per connection ({n})")
    if cfg.timeout_s <= 0 or math.isnan(cfg.timeout_s):
        raise UsageError(f"timeout must be > 0, got {cfg.timeout_s}")
    if math.isnan(cfg.qps):
        raise UsageError("qps must be a number")
    if raw:
        if not cfg.request:
            raise UsageError("request must be non-empty bytes")
        try:
            ipaddress.ip_address(cfg.host)
        except ValueError:
            raise UsageError(f"the engine needs a numeric IP address, got {cfg.host!r}") from None
        if not 0 < cfg.port < 65536:
            raise UsageError(f"bad port {cfg.port}")


def start(cfg: EngineConfig) -> Run:
    """Start a run on a new thread and return its handle (an :class:`EngineHandle`)."""
    validate(cfg)
    return Run(cfg).begin()
