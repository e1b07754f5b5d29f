"""``loadgen curl``: one request, the status line and headers on stderr, the body on stdout.

Like ``fortio curl``: a debugging aid to see what a route answers (``x-envoy-*`` headers,
fault-injected statuses). Built on the standard library's ``http.client`` so it works for
``http://`` and ``https://`` alike. Not a load: one request, no retries.
"""

from __future__ import annotations

import http.client
import ssl
from typing import BinaryIO, TextIO

from loadgen.errors import RunError
from loadgen.options import LoadOptions
from loadgen.target import method_of, parse_url, request_headers, resolve


def fetch(opts: LoadOptions, body_out: BinaryIO, err: TextIO) -> int:
    """Fetch ``opts.url`` once; 0 when the status is 2xx/418, 1 otherwise or on a socket error."""
    target = parse_url(opts.url)
    ip = resolve(target)
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        ctx = ssl.create_default_context()
        if opts.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=opts.timeout_s, context=ctx)
    else:
        conn = http.client.HTTPConnection(ip, target.port, timeout=opts.timeout_s)
    if opts.http10:
        conn._http_vsn = 10  # type: ignore[attr-defined]
        conn._http_vsn_str = "HTTP/1.0"  # type: ignore[attr-defined]
    try:
        conn.putrequest(method_of(opts), target.path, skip_host=True, skip_accept_encoding=True)
        for k, v in request_headers(opts, target):
            conn.putheader(k, v)
        conn.endheaders(opts.payload or None)
        resp = conn.getresponse()
        body = resp.read()
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise RunError(f"curl {opts.url}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        conn.close()
    version = "HTTP/1.1" if resp.version == 11 else "HTTP/1.0"
    err.write(f"{version} {resp.status} {resp.reason}\n")
    for k, v in resp.getheaders():
        err.write(f"{k}: {v}\n")
    err.write("\n")
    err.flush()
    body_out.write(body)
    body_out.flush()
    return 0 if (200 <= resp.status < 300 or resp.status == 418) else 1
