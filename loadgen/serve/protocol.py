"""The echo protocol of :mod:`loadgen.serve`: shared per-server state (date cache, status lines,
payload, access log), the incremental HTTP/1.1 request parser and the ``asyncio.Protocol``."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from email.utils import formatdate
from http import HTTPStatus

from loadgen.serve.params import TOKEN_RE, Plan, ServeConfig, make_plan, roll

# --------------------------------------------------------------------------------------------
# Shared per-server state: date cache, status lines, payload, access log, connections
# --------------------------------------------------------------------------------------------

_MAX_STATUS_LINES = 1000


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = f"status code {code}"
    return f"HTTP/1.1 {code} {phrase}\r\n".encode("latin-1")


_STATUS_LINES: dict[int, bytes] = {c: _status_line(c) for c in range(100, 600)}


class _AccessLog:
    """Buffered, whole-line ``O_APPEND`` writer (see the module docstring for the format)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lines: list[str] = []
        self._size = 0
        self._sec = -1
        self._prefix = ""

    def log(self, wall: float, method: bytes, target: bytes, status: int, dur: float, nbytes: int) -> None:
        sec = int(wall)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        line = (
            f"{self._prefix}.{int((wall - sec) * 1e6):06d}Z {method.decode('latin-1')} "
            f"{target.decode('latin-1')} {status} {dur:.6f} {nbytes}\n"
        )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= 65536:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        data = "".join(self._lines).encode("latin-1", "replace")
        self._lines.clear()
        self._size = 0
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        self.flush()
        os.close(self._fd)


class Shared:
    """State shared by the connections of one server (one event loop)."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.payload = (
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" * (cfg.max_size // 62 + 1)
        )[: cfg.max_size]
        self.debug_path = cfg.debug_path.encode("latin-1")
        self.debug_echo = cfg.debug_path.rstrip("/").encode("latin-1") + b"/echo/"
        self.default_query = cfg.default_params
        self.plans: dict[str, Plan] = {}
        self.log = _AccessLog(cfg.access_log) if cfg.access_log else None
        self.conns: set[EchoProtocol] = set()
        self.requests = 0
        self.connections = 0
        self.started = time.monotonic()
        self.rnd = random.Random(cfg.seed).random
        self.date_server = b""
        self.ok_empty = b""
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the per-second caches (Date header and the most common full response)."""
        self.date_server = b"Date: " + formatdate(usegmt=True).encode("ascii") + b"\r\nServer: loadgen\r\n"
        self.ok_empty = _STATUS_LINES[200] + self.date_server + b"Content-Length: 0\r\n\r\n"

    def plan(self, query: str) -> Plan:
        p = self.plans.get(query)
        if p is None:
            if len(self.plans) >= 1024:
                self.plans.clear()
            p = self.plans[query] = make_plan(query, self.cfg)
        return p


# --------------------------------------------------------------------------------------------
# The connection protocol: incremental parser + responder
# --------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Req:
    __slots__ = (
        "chunked",
        "cl",
        "ctype",
        "expect",
        "head",
        "keep_alive",
        "method",
        "t0",
        "target",
        "version",
    )

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.version = b""
        self.head = b""
        self.keep_alive = True
        self.cl = 0
        self.chunked = False
        self.ctype: bytes | None = None
        self.expect = False
        self.t0 = 0.0


_CK_SIZE, _CK_DATA, _CK_CRLF, _CK_TRAILER = 0, 1, 2, 3
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _parse_head(head: bytes, req: _Req) -> None:
    """Parse request line + header lines (without the final CRLFCRLF) into ``req``."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if version == b"HTTP/1.1":
        keep_alive = True
    elif version == b"HTTP/1.0":
        keep_alive = False
    else:
        raise _BadRequest(400, "unsupported HTTP version")
    if not method.isalpha() and TOKEN_RE.fullmatch(method) is None:
        raise _BadRequest(400, "malformed method")
    if target[:1] != b"/" and target != b"*" and not target.startswith((b"http://", b"https://")):
        raise _BadRequest(400, "malformed request target")
    req.method, req.target, req.version, req.head = method, target, version, head
    cl = -1
    te: bytes | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or TOKEN_RE.fullmatch(name) is None:
            raise _BadRequest(400, "malformed header line")
        lname = name.lower()
        if lname == b"content-length":
            v = value.strip()
            if not v.isdigit():
                raise _BadRequest(400, "bad Content-Length")
            n = int(v)
            if cl >= 0 and n != cl:
                raise _BadRequest(400, "conflicting Content-Length")
            cl = n
        elif lname == b"transfer-encoding":
            te = value.strip().lower() if te is None else te + b"," + value.strip().lower()
        elif lname == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
        elif lname == b"expect":
            if value.strip().lower() != b"100-continue":
                raise _BadRequest(417, "unsupported Expect")
            req.expect = version == b"HTTP/1.1"
        elif lname == b"content-type":
            req.ctype = value.strip()
    req.keep_alive = keep_alive
    if te is not None:
        if cl >= 0:
            raise _BadRequest(400, "both Content-Length and Transfer-Encoding")
        if version != b"HTTP/1.1":
            raise _BadRequest(400, "Transfer-Encoding in HTTP/1.0")
        if te != b"chunked":
            raise _BadRequest(501, "unsupported Transfer-Encoding")
        req.chunked = True
    elif cl > 0:
        req.cl = cl


class EchoProtocol(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_body",
        "_body_len",
        "_buf",
        "_ck_left",
        "_ck_state",
        "_closing",
        "_eof",
        "_idle",
        "_read_paused",
        "_remote",
        "_req",
        "_sh",
        "_timer",
        "_transport",
        "_waiting",
        "_write_paused",
    )

    def __init__(self, shared: Shared) -> None:
        self._sh = shared
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._req: _Req | None = None
        self._body: list[bytes] = []
        self._body_len = 0
        self._ck_state = _CK_SIZE
        self._ck_left = 0
        self._waiting = False
        self._closing = False
        self._eof = False
        self._write_paused = False
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._active = True
        self._idle = 0.0
        self._remote = ""

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._sh.conns.add(self)
        self._sh.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._sh.conns.discard(self)
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._active = True
        self._buf += data
        if self._waiting or self._write_paused:
            if len(self._buf) > self._sh.cfg.max_header_bytes + self._sh.cfg.max_body_bytes:
                self._pause_reading()
            return
        self._process()

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._waiting and not self._closing:
            return True  # keep the half-open socket to deliver the pending (delayed) response
        return None

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._closing and not self._waiting:
            self._resume_reading()
            self._process()

    # -- helpers ---------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None and not self._closing:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None and not self._closing:
            self._read_paused = False
            self._transport.resume_reading()

    def idle_tick(self, now: float) -> None:
        """Called once a second by the server: close connections idle longer than the timeout."""
        if self._active or self._waiting or self._req is not None:
            self._active = False
            self._idle = now
        elif now - self._idle >= self._sh.cfg.idle_timeout and self._transport is not None:
            self._closing = True
            self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # -- the parser loop -------------------------------------------------------------------

    def _process(self) -> None:
        """Answer every complete request in the buffer, in order, with one write."""
        buf = self._buf
        sh = self._sh
        n = len(buf)
        pos = 0
        out: list[bytes] = []
        try:
            while pos < n and not self._closing:
                req = self._req
                if req is None:
                    if buf[pos] == 13 or buf[pos] == 10:  # tolerate empty lines between requests
                        pos += 1
                        continue
                    end = buf.find(b"\r\n\r\n", pos)
                    if end < 0:
                        if n - pos > sh.cfg.max_header_bytes:
                            raise _BadRequest(431, "request header fields too large")
                        break
                    if end - pos > sh.cfg.max_header_bytes:
                        raise _BadRequest(431, "request header fields too large")
                    req = _Req()
                    _parse_head(bytes(buf[pos:end]), req)
                    pos = end + 4
                    if sh.log is not None:
                        req.t0 = time.time()
                    if req.cl > sh.cfg.max_body_bytes:
                        raise _BadRequest(413, "request body too large")
                    if not req.chunked and req.cl == 0:
                        if not self._answer(req, b"", out):
                            break
                        continue
                    self._req = req
                    self._body = []
                    self._body_len = 0
                    self._ck_state = _CK_SIZE
                    if req.expect and (req.chunked or n - pos < req.cl):
                        out.append(_CONTINUE)
                if req.chunked:
                    pos, done = self._read_chunked(buf, pos, n)
                else:
                    take = min(req.cl - self._body_len, n - pos)
                    if take:
                        self._body.append(bytes(buf[pos : pos + take]))
                        self._body_len += take
                        pos += take
                    done = self._body_len == req.cl
                if not done:
                    break
                self._req = None
                body = b"".join(self._body)
                self._body = []
                if not self._answer(req, body, out):
                    break
        except _BadRequest as exc:
            out.append(self._error_response(exc))
            self._closing = True
        if pos:
            del buf[:pos]
        transport = self._transport
        if transport is None:
            return
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self._closing or (self._eof and not self._waiting):
            transport.close()

    def _read_chunked(self, buf: bytearray, pos: int, n: int) -> tuple[int, bool]:
        limit = self._sh.cfg.max_body_bytes
        while True:
            state = self._ck_state
            if state == _CK_DATA:
                take = min(self._ck_left, n - pos)
                if take:
                    self._body.append(bytes(buf[pos : pos + take]))
                    pos += take
                    self._ck_left -= take
                if self._ck_left:
                    return pos, False
                self._ck_state = _CK_CRLF
            elif state == _CK_CRLF:
                if n - pos < 2:
                    return pos, False
                if buf[pos : pos + 2] != b"\r\n":
                    raise _BadRequest(400, "missing CRLF after chunk data")
                pos += 2
                self._ck_state = _CK_SIZE
            else:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if n - pos > 4096:
                        raise _BadRequest(400, "chunk line too long")
                    return pos, False
                line = bytes(buf[pos:end])
                pos = end + 2
                if state == _CK_TRAILER:
                    if not line:
                        return pos, True
                    continue
                digits = line.split(b";", 1)[0].strip()
                if not digits or len(digits) > 16 or not _HEX.issuperset(digits):
                    raise _BadRequest(400, "bad chunk size")
                size = int(digits, 16)
                if size == 0:
                    self._ck_state = _CK_TRAILER
                    continue
                self._body_len += size
                if self._body_len > limit:
                    raise _BadRequest(413, "request body too large")
                self._ck_left = size
                self._ck_state = _CK_DATA

    # -- responses -------------------------------------------------------------------------

    def _answer(self, req: _Req, body: bytes, out: list[bytes]) -> bool:
        """Append the response for ``req`` to ``out``; False when processing must stop here
        (a delayed response was scheduled, or the connection is closing)."""
        sh = self._sh
        sh.requests += 1
        target = req.target
        qmark = target.find(b"?")
        path = target if qmark < 0 else target[:qmark]
        if path[:1] != b"/" and path != b"*":
            # absolute-form: http://host[:port]/path
            slash = path.find(b"/", path.find(b"//") + 2) if b"//" in path else -1
            path = path[slash:] if slash >= 0 else b"/"
        if path == sh.debug_path:
            resp = self._debug(req, body)
            return self._emit(req, resp, 200, not req.keep_alive, out)
        if path == b"/healthz":
            resp = self._build(req, 200, b"ok\n", b"Content-Type: text/plain\r\n", not req.keep_alive)
            return self._emit(req, resp, 200, not req.keep_alive, out)
        query = target[qmark + 1 :].decode("latin-1") if qmark >= 0 else sh.default_query
        if not query:
            if not body and req.keep_alive and req.version == b"HTTP/1.1":
                return self._emit(req, sh.ok_empty, 200, False, out)
            resp = self._echo_response(req, 200, body, None, b"", not req.keep_alive)
            return self._emit(req, resp, 200, not req.keep_alive, out)
        plan = sh.plan(query)
        rnd = sh.rnd
        status = 200
        if plan.bad_status:
            status = 400
        elif plan.status is not None:
            picked = roll(plan.status, rnd)
            if picked is not None:
                status = int(picked)
        close = not req.keep_alive
        if plan.close_pct > 0.0 and (plan.close_pct >= 100.0 or 100.0 * rnd() <= plan.close_pct):
            close = True
        size: int | None = None
        if plan.size is not None:
            picked = roll(plan.size, rnd)
            if picked is not None:
                size = int(picked)
        delay = 0.0
        if plan.delay is not None:
            picked = roll(plan.delay, rnd)
            if picked is not None and picked > 0:
                delay = picked
        if delay > 0.0:
            self._waiting = True
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delay, self._delayed, req, status, body, size, plan.headers, close)
            return False
        resp = self._echo_response(req, status, body, size, plan.headers, close)
        return self._emit(req, resp, status, close, out)

    def _delayed(
        self, req: _Req, status: int, body: bytes, size: int | None, headers: bytes, close: bool
    ) -> None:
        self._timer = None
        self._waiting = False
        if self._closing or self._transport is None:
            return
        out: list[bytes] = []
        resp = self._echo_response(req, status, body, size, headers, close)
        self._emit(req, resp, status, close, out)
        self._transport.write(out[0])
        if self._closing:
            self._transport.close()
            return
        if not self._write_paused:
            self._resume_reading()
            self._process()

    def _emit(self, req: _Req, resp: bytes, status: int, close: bool, out: list[bytes]) -> bool:
        out.append(resp)
        log = self._sh.log
        if log is not None:
            now = time.time()
            log.log(req.t0, req.method, req.target, status, now - req.t0, len(resp))
        if close:
            self._closing = True
            return False
        return True

    def _build(self, req: _Req, status: int, body: bytes, extra: bytes, close: bool) -> bytes:
        line = _STATUS_LINES.get(status) or _status_line(status)
        conn = (
            b"Connection: close\r\n"
            if close
            else (b"Connection: keep-alive\r\n" if req.version == b"HTTP/1.0" else b"")
        )
        if status == 204 or status == 304:
            return line + self._sh.date_server + extra + conn + b"\r\n"
        head = b"%s%sContent-Length: %d\r\n%s%s\r\n" % (line, self._sh.date_server, len(body), extra, conn)
        if req.method == b"HEAD":
            return head
        return head + body

    def _echo_response(
        self, req: _Req, status: int, body: bytes, size: int | None, headers: bytes, close: bool
    ) -> bytes:
        if size is not None:
            return self._build(
                req,
                status,
                self._sh.payload[:size],
                headers + b"Content-Type: application/octet-stream\r\n",
                close,
            )
        if req.ctype is not None:
            headers = headers + b"Content-Type: " + req.ctype + b"\r\n"
        return self._build(req, status, body, headers, close)

    def _error_response(self, exc: _BadRequest) -> bytes:
        body = f"{exc.reason}\n".encode()
        return b"%s%sContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
            _STATUS_LINES.get(exc.status) or _status_line(exc.status),
            self._sh.date_server,
            len(body),
            body,
        )

    def _debug(self, req: _Req, body: bytes) -> bytes:
        sh = self._sh
        if not self._remote and self._transport is not None:
            peer = self._transport.get_extra_info("peername")
            self._remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        host = ""
        headers: dict[str, list[str]] = {}
        for line in req.head.split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            canon = "-".join(w[:1].upper() + w[1:].lower() for w in name.split("-"))
            if canon == "Host":
                host = value.strip()
            else:
                headers.setdefault(canon, []).append(value.strip())
        up = time.monotonic() - sh.started
        text = [
            f"loadgen echo debug server (pid {os.getpid()}) up for {up:.1f}s on {socket.gethostname()}"
            f" - request from {self._remote}",
            "",
            f"{req.method.decode('latin-1')} {req.target.decode('latin-1')} {req.version.decode('latin-1')}",
            "",
            "headers:",
            "",
            f"Host: {host}",
        ]
        text.extend(f"{k}: {','.join(v)}" for k, v in sorted(headers.items()))
        summary = body[:512].decode("latin-1") + (f"... ({len(body)} bytes)" if len(body) > 512 else "")
        text += ["", "body:", "", summary, ""]
        data = "\n".join(text).encode("utf-8")
        return self._build(req, 200, data, b"Content-Type: text/plain; charset=UTF-8\r\n", not req.keep_alive)
