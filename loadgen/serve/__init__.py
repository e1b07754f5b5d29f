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

from loadgen.serve.cli import serve_main
from loadgen.serve.params import READY_PREFIX, ServeConfig, check_loopback, parse_go_duration
from loadgen.serve.server import EchoServer

__all__ = [
    "READY_PREFIX",
    "EchoServer",
    "ServeConfig",
    "check_loopback",
    "parse_go_duration",
    "serve_main",
]
