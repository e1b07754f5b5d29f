"""Micro-benchmark of the C engine against an already running fast loopback server.

What it is: runs :mod:`loadgen._core` closed-loop for N requests against URL (http://127.0.0.1
only) and prints req/s and this process's CPU µs per request (user/sys from getrusage), so it
can be compared with wrk in the same time window. It starts no server and is not collected by
pytest. What it is not: the full wrk comparison (see ``/work/shared/reference/perf/bench.sh``).

    python benchmarks/core_smoke.py http://127.0.0.1:18481/ -n 500000 -c 16 -t 1
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from urllib.parse import urlsplit

from loadgen import _core
from loadgen.engine_api import EngineConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("-n", type=int, default=300_000, help="total requests")
    ap.add_argument("-c", type=int, default=16, help="connections")
    ap.add_argument("-t", type=int, default=1, help="engine threads")
    args = ap.parse_args(argv)
    u = urlsplit(args.url)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "::1"):
        print("only http://127.0.0.1 (or [::1]) targets are allowed", file=sys.stderr)
        return 2
    if not 0 < args.n <= 50_000_000:
        print("-n must be in 1..50,000,000", file=sys.stderr)
        return 2
    path = u.path or "/"
    request = f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUser-Agent: loadgen-smoke\r\n\r\n".encode()
    per, rem = divmod(args.n, args.c)
    calls = tuple(per + (rem if j == 0 else 0) for j in range(args.c))
    cfg = EngineConfig(
        host=u.hostname,
        port=u.port or 80,
        request=request,
        connections=args.c,
        threads=args.t,
        calls=calls,
        timeout_s=5.0,
    )
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    handle = _core.start(cfg)
    handle.wait()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res = handle.result()
    n = res.count
    user = (r1.ru_utime - r0.ru_utime) * 1e6
    sys_ = (r1.ru_stime - r0.ru_stime) * 1e6
    print(f"requests {n} in {wall:.3f} s: {n / wall:,.0f} req/s; codes {res.codes} errors {res.errors}")
    if n:
        print(
            f"CPU/request {(user + sys_) / n:.2f} µs (user {user / n:.2f}, sys {sys_ / n:.2f}); "
            f"p50 {res.latency.percentile(50) / 1e3:.0f} µs p99 {res.latency.percentile(99) / 1e3:.0f} µs; "
            f"sockets {sum(res.sockets)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
