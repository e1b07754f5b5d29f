"""``loadgen serve``: a fast HTTP/1.1 echo server on loopback, the test target (like ``fortio server``).

What it is
    An ``asyncio.Protocol`` server with a small hand-written incremental HTTP/1.1 request parser
    (request line, headers, ``Content-Length`` or chunked bodies with extensions and trailers,
    ``Expect: 100-continue``), keep-alive and pipelining (responses always leave in request order).
    It honours fortio's echo query parameters so it can play a misbehaving upstream behind Envoy:

    ``delay=250ms`` / ``delay=150us:10,2ms:5,0.5s:1``
        Go durations (ns, us, µs, ms, s, m, h; ``1m30s``). The list form is ``value:percent``
        pairs; one dice roll in [0, 100) picks the first entry whose cumulative percentage is >=
        the roll, otherwise no delay. Every value is capped at ``max_delay`` (default 1.5 s,
        fortio's ``-max-echo-delay``). Unparseable: ignored (no delay), like fortio.
    ``status=503`` / ``status=503:30,429:1.5``
        Same forms; the remainder of the table is 200. Unparseable, or a code outside 200..999:
        400 (fortio answers 400 to a bad status too).
    ``size=1024`` / ``size=512:20,16384:10``
        Body of exactly that many bytes (``application/octet-stream``, a fixed ASCII pattern),
        capped at ``max_size`` (default 256 KiB, fortio's ``-maxpayloadsizekb 256``). The remainder
        of the table, or an unparseable value, means "echo as usual".
    ``close=true`` / ``close=5.3``
        ``true`` (or any non-number) always, a number is a percentage: answer with
        ``Connection: close`` and close the connection after this response. ``false``/empty: never.
    ``header=name:value`` (repeatable)
        Adds the response header (value stripped; entries without ``:``, with a name that is not an
        HTTP token or a value with control characters are ignored), e.g.
        ``header=x-envoy-overloaded:true``.
    ``gzip``
        Ignored (responses are never compressed).

    Without a query string, ``default_params`` (fortio's ``-echo-server-default-params``) is used
    as if it were the query. Other parameters are ignored; unlike fortio, form-encoded POST bodies
    are not read as parameters.

    What the echo answers (any method, any path except the two below, also ``/debug/echo/...``):
    status 200 (or ``status=``), and as body exactly the request body (after de-chunking), with the
    request's ``Content-Type`` copied when it had one — fortio's echo handler. A request without a
    body (e.g. a plain ``GET``) therefore gets an empty 200 body, as from fortio. ``size=`` replaces
    the body. ``HEAD`` gets the same headers (``Content-Length`` included) and no body.

    ``/debug``   (``debug_path``) a text page like fortio's: method, URL, protocol, the request
                 headers (``Host`` first, then sorted by canonical name, repeated ones joined with
                 ``,``) and the first 512 bytes of the body.
    ``/healthz`` 200 ``ok``.

    Every response is framed by ``Content-Length`` (except 204/304, which have no body) and carries
    ``Date`` and ``Server: loadgen``. Malformed requests get 400 (an unsupported
    ``Transfer-Encoding`` 501) and the connection is closed; request heads over ``max_header_bytes``
    (64 KiB) get 431, bodies over ``max_body_bytes`` (1 MiB) 413, then close. Idle keep-alive
    connections are closed after ``idle_timeout`` (30 s, fortio's ``-server-idle-timeout``).
    Request heads must use CRLF line ends (bare LF is not recognised).

    The optional access log has one line per request: ``time method target status duration_s
    bytes`` separated by single spaces; time is UTC RFC 3339 with microseconds at the moment the
    request head was complete, duration runs from then to the response being handed to the
    socket (so it includes any ``delay``), bytes is the response size on the wire. Lines are
    buffered (64 KiB or 1 s) and appended with ``O_APPEND`` in whole lines, so several workers
    may share one file.

What it is not
    Not a general web server: no TLS, no HTTP/2, no compression, no static files. It only binds
    loopback addresses (127.0.0.0/8, ::1) — this is a lab tool.

Entry points: :func:`serve_main` (the ``loadgen serve`` command; ``python -m loadgen.serve``) and
:class:`EchoServer` (tests, the lab: a server in a background thread or in a subprocess).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qsl

from loadgen.durations import parse_seconds
from loadgen.errors import RunError, UsageError

__all__ = [
    "EchoServer",
    "ServeConfig",
    "check_loopback",
    "parse_go_duration",
    "serve_main",
]

READY_PREFIX = "loadgen serve listening on "

# --------------------------------------------------------------------------------------------
# Configuration and parameter parsing (pure functions)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeConfig:
    """Everything that shapes the server's behaviour; the defaults are fortio's where it has one."""

    max_delay: float = 1.5
    """Cap for ``delay=`` in seconds (fortio ``-max-echo-delay 1.5s``)."""
    max_size: int = 256 * 1024
    """Cap for ``size=`` in bytes (fortio ``-maxpayloadsizekb 256``)."""
    max_header_bytes: int = 64 * 1024
    """Largest request line + headers accepted; above: 431 and close."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted; above: 413 and close."""
    idle_timeout: float = 30.0
    """Close keep-alive connections idle this long (s); <= 0 disables."""
    default_params: str = ""
    """Query string used when a request has none (fortio ``-echo-server-default-params``)."""
    debug_path: str = "/debug"
    """Path of the debug page; ``debug_path + '/echo/'`` is an echo path too."""
    access_log: str | None = None
    """Append one line per request to this file."""


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.ParseDuration`` string (``250ms``, ``1m30s``, ``-1.5h``, ``0``) into seconds.

    Raises ValueError for anything malformed.
    """
    return parse_seconds(text)


def _parse_table(text: str, parse_value: Callable[[str], float]) -> list[tuple[float, float]]:
    """``v`` → [(v, 100)]; ``v1:p1,v2:p2`` → [(v1, cum1), (v2, cum2)]; ValueError when malformed.

    Percentages may end with ``%``, must be in [0, 100] and must not sum above 100 (fortio's rule,
    rounded like fortio's ``stats.Round`` to 4 significant decimals).
    """
    if "," not in text and ":" not in text:
        return [(parse_value(text), 100.0)]
    out: list[tuple[float, float]] = []
    cum = 0.0
    for entry in text.split(","):
        parts = entry.split(":")
        if len(parts) != 2:
            raise ValueError(f"expected value:percent in {entry!r}")
        value = parse_value(parts[0])
        pct_text = parts[1][:-1] if parts[1].endswith("%") else parts[1]
        pct = float(pct_text)
        if not 0.0 <= pct <= 100.0:
            raise ValueError(f"percentage {pct_text!r} is not in [0, 100]")
        cum += pct
        rounded = round(cum, 4)
        if rounded > 100.0:
            raise ValueError(f"percentages in {text!r} sum to more than 100")
        out.append((value, rounded))
    return out


def _roll(table: list[tuple[float, float]], rnd: Callable[[], float]) -> float | None:
    """Pick from a cumulative table with one roll in [0, 100); None when the roll hits no entry."""
    if len(table) == 1 and table[0][1] >= 100.0:
        return table[0][0]
    res = 100.0 * rnd()
    for value, cum in table:
        if res <= cum:
            return value
    return None


def _parse_int(text: str) -> float:
    return float(int(text.strip()))


def _parse_probability(text: str) -> float:
    """fortio's generateSingleProbability as a percentage: ''/false → 0, true/non-number → 100."""
    if text in ("", "false"):
        return 0.0
    if text == "true":
        return 100.0
    try:
        return float(text)
    except ValueError:
        return 100.0


_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class _Plan:
    """The parsed echo parameters of one query string (cached by query string)."""

    delay: list[tuple[float, float]] | None
    status: list[tuple[float, float]] | None
    bad_status: bool
    size: list[tuple[float, float]] | None
    close_pct: float
    headers: bytes


def _make_plan(query: str, cfg: ServeConfig) -> _Plan:
    first: dict[str, str] = {}
    extra: list[bytes] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "header":
            name, sep, hval = value.partition(":")
            bname = name.encode("latin-1", "replace")
            bval = hval.strip().encode("utf-8")
            if sep and _TOKEN_RE.fullmatch(bname) and not _BAD_VALUE_RE.search(bval):
                extra.append(bname + b": " + bval + b"\r\n")
        elif key not in first:
            first[key] = value
    delay: list[tuple[float, float]] | None = None
    if first.get("delay"):
        try:
            delay = [(min(v, cfg.max_delay), c) for v, c in _parse_table(first["delay"], parse_go_duration)]
        except ValueError:
            delay = None
    status: list[tuple[float, float]] | None = None
    bad_status = False
    if first.get("status"):
        try:
            status = _parse_table(first["status"], _parse_int)
            bad_status = any(not 200 <= v <= 999 for v, _ in status)
        except ValueError:
            bad_status = True
    size: list[tuple[float, float]] | None = None
    if first.get("size"):
        try:
            size = [(max(0.0, min(v, cfg.max_size)), c) for v, c in _parse_table(first["size"], _parse_int)]
        except ValueError:
            size = None
    return _Plan(delay, status, bad_status, size, _parse_probability(first.get("close", "")), b"".join(extra))


def check_loopback(bind: str) -> str:
    """Return the address to bind if ``bind`` is loopback (127.0.0.0/8, ::1, ``localhost``).

    Raises UsageError otherwise: this server is a lab target and never listens beyond the host.
    """
    if bind == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(bind.strip("[]"))
    except ValueError:
        raise UsageError(f"serve: -bind {bind!r} is not an IP address (only loopback is allowed)") from None
    if isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.ip_network("127.0.0.0/8"):
        return str(addr)
    if isinstance(addr, ipaddress.IPv6Address) and addr == ipaddress.IPv6Address("::1"):
        return "::1"
    raise UsageError(f"serve: -bind {bind} is not a loopback address (only 127.0.0.0/8 and ::1 are allowed)")


def _url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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


class _Shared:
    """State shared by the connections of one server (one event loop)."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.payload = (
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" * (cfg.max_size // 62 + 1)
        )[: cfg.max_size]
        self.debug_path = cfg.debug_path.encode("latin-1")
        self.debug_echo = cfg.debug_path.rstrip("/").encode("latin-1") + b"/echo/"
        self.default_query = cfg.default_params
        self.plans: dict[str, _Plan] = {}
        self.log = _AccessLog(cfg.access_log) if cfg.access_log else None
        self.conns: set[_EchoProtocol] = set()
        self.requests = 0
        self.connections = 0
        self.started = time.monotonic()
        self.rnd = random.random
        self.date_server = b""
        self.ok_empty = b""
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the per-second caches (Date header and the most common full response)."""
        self.date_server = b"Date: " + formatdate(usegmt=True).encode("ascii") + b"\r\nServer: loadgen\r\n"
        self.ok_empty = _STATUS_LINES[200] + self.date_server + b"Content-Length: 0\r\n\r\n"

    def plan(self, query: str) -> _Plan:
        p = self.plans.get(query)
        if p is None:
            if len(self.plans) >= 1024:
                self.plans.clear()
            p = self.plans[query] = _make_plan(query, self.cfg)
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
    if not method.isalpha() and _TOKEN_RE.fullmatch(method) is None:
        raise _BadRequest(400, "malformed method")
    if target[:1] != b"/" and target != b"*" and not target.startswith((b"http://", b"https://")):
        raise _BadRequest(400, "malformed request target")
    req.method, req.target, req.version, req.head = method, target, version, head
    cl = -1
    te: bytes | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or _TOKEN_RE.fullmatch(name) is None:
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


class _EchoProtocol(asyncio.Protocol):
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

    def __init__(self, shared: _Shared) -> None:
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
            picked = _roll(plan.status, rnd)
            if picked is not None:
                status = int(picked)
        close = not req.keep_alive
        if plan.close_pct > 0.0 and (plan.close_pct >= 100.0 or 100.0 * rnd() <= plan.close_pct):
            close = True
        size: int | None = None
        if plan.size is not None:
            picked = _roll(plan.size, rnd)
            if picked is not None:
                size = int(picked)
        delay = 0.0
        if plan.delay is not None:
            picked = _roll(plan.delay, rnd)
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


# --------------------------------------------------------------------------------------------
# Running a server in an event loop
# --------------------------------------------------------------------------------------------


def _make_socket(host: str, port: int, reuse_port: bool, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _LoopServer:
    """One listening socket served by one event loop (the unit a worker or a thread runs)."""

    def __init__(self, cfg: ServeConfig, sock: socket.socket) -> None:
        self.cfg = cfg
        self.sock = sock
        self.shared = _Shared(cfg)
        self._server: asyncio.base_events.Server | None = None
        self._tick: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        shared = self.shared
        self._server = await loop.create_server(lambda: _EchoProtocol(shared), sock=self.sock, backlog=1024)
        self._schedule_tick(loop)

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.time()
        self._tick = loop.call_later(1.0 - (now % 1.0) + 0.001, self._on_tick, loop)

    def _on_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        sh = self.shared
        sh.refresh()
        if sh.log is not None:
            sh.log.flush()
        if self.cfg.idle_timeout > 0:
            now = time.monotonic()
            for conn in list(sh.conns):
                conn.idle_tick(now)
        self._schedule_tick(loop)

    async def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.shared.conns):
            conn.abort()
        # let the transports run connection_lost (closing their sockets) before the loop stops
        deadline = time.monotonic() + 2.0
        await asyncio.sleep(0)
        while self.shared.conns and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self.shared.log is not None:
            self.shared.log.close()
            self.shared.log = None


async def _serve_until_signal(cfg: ServeConfig, sock: socket.socket, ready: Callable[[], None]) -> _Shared:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = _LoopServer(cfg, sock)
    await server.start()
    ready()
    await stop.wait()
    await server.close()
    return server.shared


# --------------------------------------------------------------------------------------------
# Programmatic API
# --------------------------------------------------------------------------------------------


class EchoServer:
    """A ``loadgen serve`` instance for tests and the lab.

    ``mode="thread"`` (default) runs the server's event loop in a daemon thread of this process
    (cheap, but shares the GIL with the caller); ``mode="process"`` runs ``python -m loadgen.serve``
    as a subprocess (its own CPU; use it when the caller generates load). Port 0 picks a free
    port; :attr:`port` and :attr:`url` are valid after :meth:`start`. Use as a context manager or
    call :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        config: ServeConfig | None = None,
        *,
        mode: str = "thread",
        workers: int = 1,
    ) -> None:
        self.host = check_loopback(host)
        if mode not in ("thread", "process"):
            raise UsageError(f"serve: mode must be 'thread' or 'process', not {mode!r}")
        if workers < 1 or (workers > 1 and mode != "process"):
            raise UsageError("serve: workers > 1 needs mode='process'")
        self.config = config or ServeConfig()
        self.mode = mode
        self.workers = workers
        self._want_port = port
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _LoopServer | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return _url_for(self.host, self.port)

    @property
    def pid(self) -> int | None:
        """The subprocess's PID in process mode, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def requests(self) -> int:
        """Requests answered so far (thread mode only; process mode: -1)."""
        return self._server.shared.requests if self._server is not None else -1

    def start(self, timeout: float = 10.0) -> EchoServer:
        if self._thread is not None or self._proc is not None:
            raise RunError("serve: EchoServer already started")
        if self.mode == "thread":
            self._start_thread(timeout)
        else:
            self._start_process(timeout)
        return self

    def _start_thread(self, timeout: float) -> None:
        try:
            sock = _make_socket(self.host, self._want_port, False)
        except OSError as exc:
            raise RunError(
                f"serve: cannot listen on {_url_for(self.host, self._want_port)}: {exc.strerror}"
            ) from exc
        self.port = sock.getsockname()[1]
        started = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = _LoopServer(self.config, sock)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                assert self._server is not None
                loop.run_until_complete(self._server.start())
            except BaseException as exc:  # reported to start()'s caller
                self._error = exc
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"loadgen-serve-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(timeout) or self._error is not None:
            raise RunError(f"serve: echo server failed to start: {self._error}")

    def _start_process(self, timeout: float) -> None:
        cfg = self.config
        argv = [
            sys.executable, "-m", "loadgen.serve",
            "-bind", self.host, "-port", str(self._want_port), "-workers", str(self.workers),
            "-max-delay", f"{cfg.max_delay}s", "-maxpayloadsizekb", str(cfg.max_size // 1024),
            "-idle-timeout", f"{cfg.idle_timeout}s", "-echo-debug-path", cfg.debug_path,
        ]  # fmt: skip
        if cfg.default_params:
            argv += ["-default-params", cfg.default_params]
        if cfg.access_log:
            argv += ["-access-log", cfg.access_log]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self._proc = proc
        line = _readline_with_timeout(proc, timeout)
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RunError(f"serve: echo server subprocess did not start (got {line.strip()!r})")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (idempotent); in process mode SIGTERM, then SIGKILL after ``timeout``."""
        if self._loop is not None and self._thread is not None:
            loop, server = self._loop, self._server

            async def shutdown() -> None:
                if server is not None:
                    await server.close()
                loop.stop()

            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(shutdown(), loop)
            self._thread.join(timeout)
            self._thread = None
        if self._proc is not None:
            proc = self._proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            if proc.stdout is not None:
                proc.stdout.close()
            self._proc = None

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline_with_timeout(proc: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"serve: {message}")


def _build_parser() -> _Parser:
    p = _Parser(
        prog="loadgen serve",
        description="HTTP/1.1 echo server on loopback with fortio's echo parameters "
        "(delay=, status=, size=, close=, header=).",
        allow_abbrev=False,
    )
    p.add_argument(
        "-port", "--port", type=int, default=8080, help="TCP port (0: pick a free one); default 8080"
    )
    p.add_argument("-bind", "--bind", default="127.0.0.1", help="loopback address to bind; default 127.0.0.1")
    p.add_argument("-access-log", "--access-log", metavar="PATH", help="append one line per request")
    p.add_argument(
        "-workers", "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)"
    )
    p.add_argument("-quiet", "--quiet", action="store_true", help="no summary on stderr at exit")
    p.add_argument("-max-delay", "-max-echo-delay", "--max-delay", default="1.5s",
                   help="cap for delay= (Go duration); default 1.5s")  # fmt: skip
    p.add_argument("-maxpayloadsizekb", "--maxpayloadsizekb", type=int, default=256,
                   help="cap for size= in KiB; default 256")  # fmt: skip
    p.add_argument("-default-params", "-echo-server-default-params", "--default-params", default="",
                   help="query string used when a request has none, e.g. 'status=503:10'")  # fmt: skip
    p.add_argument("-echo-debug-path", "--echo-debug-path", default="/debug", help="debug page path")
    p.add_argument("-idle-timeout", "-server-idle-timeout", "--idle-timeout", default="30s",
                   help="close idle keep-alive connections after this (Go duration, 0: never)")  # fmt: skip
    return p


def _config_from_args(ns: argparse.Namespace) -> ServeConfig:
    try:
        max_delay = parse_go_duration(ns.max_delay)
        idle = parse_go_duration(ns.idle_timeout)
    except ValueError as exc:
        raise UsageError(f"serve: {exc}") from None
    if not 0 <= ns.port <= 65535:
        raise UsageError(f"serve: -port {ns.port} is not in 0..65535")
    if not 1 <= ns.workers <= 64:
        raise UsageError(f"serve: -workers {ns.workers} is not in 1..64")
    if ns.maxpayloadsizekb < 0:
        raise UsageError("serve: -maxpayloadsizekb must be >= 0")
    if not ns.echo_debug_path.startswith("/"):
        raise UsageError("serve: -echo-debug-path must start with '/'")
    return ServeConfig(
        max_delay=max(0.0, max_delay),
        max_size=ns.maxpayloadsizekb * 1024,
        idle_timeout=idle,
        default_params=ns.default_params,
        debug_path=ns.echo_debug_path,
        access_log=ns.access_log,
    )


def serve_main(argv: Sequence[str]) -> int:
    """Run ``loadgen serve`` with ``argv`` (flags only); returns the exit code.

    Usage errors print one line ``loadgen: serve: ...`` on stderr and return 2. When listening,
    prints ``loadgen serve listening on http://HOST:PORT`` on stdout; SIGINT/SIGTERM stop it
    cleanly with 0.
    """
    try:
        try:
            ns = _build_parser().parse_args(list(argv))
        except SystemExit as exc:  # -h/--help
            return int(exc.code or 0)
        host = check_loopback(ns.bind)
        cfg = _config_from_args(ns)
        if cfg.access_log:
            try:
                os.close(os.open(cfg.access_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
            except OSError as exc:
                raise UsageError(f"serve: cannot open access log {cfg.access_log}: {exc.strerror}") from None
        try:
            # with several workers the parent only reserves the port (bound, not listening)
            sock = _make_socket(host, ns.port, ns.workers > 1, listen=ns.workers == 1)
        except OSError as exc:
            raise UsageError(f"serve: cannot listen on {_url_for(host, ns.port)}: {exc.strerror}") from None
    except UsageError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return exc.exit_code
    port = sock.getsockname()[1]

    def ready() -> None:
        print(f"{READY_PREFIX}{_url_for(host, port)}", flush=True)

    if ns.workers == 1:
        shared = asyncio.run(_serve_until_signal(cfg, sock, ready))
        if not ns.quiet:
            print(
                f"loadgen serve: stopped after {shared.requests} requests"
                f" on {shared.connections} connections",
                file=sys.stderr,
            )
        return 0
    return _run_workers(cfg, sock, host, port, ns.workers, ready)


class _Stop(Exception):
    pass


def _run_workers(
    cfg: ServeConfig, sock: socket.socket, host: str, port: int, workers: int, ready: Callable[[], None]
) -> int:
    """Fork ``workers`` processes, each with its own SO_REUSEPORT listener on ``port``.

    The parent's socket (bound, not listening: it only reserves the port) is closed once every
    worker listens; the parent then only supervises: SIGINT/SIGTERM are forwarded, and it exits 0
    after the workers exit (1 if a worker died on its own).
    """
    rfd, wfd = os.pipe()
    pids: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        raise _Stop

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:  # worker
                for s, h in old.items():
                    signal.signal(s, h)
                os.close(rfd)
                sock.close()
                code = 1
                try:
                    wsock = _make_socket(host, port, True)

                    def worker_ready() -> None:
                        os.write(wfd, b"r")
                        os.close(wfd)

                    asyncio.run(_serve_until_signal(cfg, wsock, worker_ready))
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(wfd)
        got = 0
        while got < workers:
            chunk = os.read(rfd, workers)
            if not chunk:
                break
            got += len(chunk)
        os.close(rfd)
        sock.close()
        if got < workers:
            failed = True
            raise _Stop
        ready()
        while pids:
            pid, _status = os.wait()
            if pid in pids:
                pids.remove(pid)
                failed = True
                raise _Stop
    except _Stop:
        pass
    finally:
        sock.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for s, h in old.items():
            signal.signal(s, h)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(serve_main(sys.argv[1:]))
