"""Side-by-side benchmark of loadgen's engines against wrk on a loopback nginx (not a test).

Method (see benchmarks/README.md): nginx (1 worker, keep-alive, access log off) pinned to CPU 1,
each client pinned to CPU 0 under GNU time. Requests counted from nginx's stub_status delta, so
the count does not depend on the tool. Client CPU = user+sys of the client process tree. Runs are
interleaved (wrk, loadgen c, wrk, loadgen c, ...) and medians reported, because absolute µs drift
between time windows on a shared VM while ratios hold.

Usage: python benchmarks/compare_wrk.py [--reps 3] [--secs 5] [--out benchmarks/results/DATE.md]
Everything binds to and targets 127.0.0.1; every client run is bounded by time or count.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PORT = 18490
NGINX_CONF = """
worker_processes {workers};
worker_rlimit_nofile 65536;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; use epoll; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 120s;
  client_body_temp_path {dir}/cbt; proxy_temp_path {dir}/pt; fastcgi_temp_path {dir}/ft;
  uwsgi_temp_path {dir}/ut; scgi_temp_path {dir}/st;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = / {{ default_type text/plain; return 200 "ok"; }}
    location = /nginx_status {{ stub_status; }}
  }}
}}
"""


class Nginx:
    def __init__(self, workers: int = 1, cpus: str = "1") -> None:
        self.dir = tempfile.mkdtemp(prefix="lgbench-")
        conf = Path(self.dir) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workers=workers, dir=self.dir, port=PORT))
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpus, "nginx", "-p", self.dir, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                self.requests()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def requests(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/nginx_status", timeout=2) as r:
            lines = r.read().decode().splitlines()
        return int(lines[2].split()[2])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(cmd: list[str], nginx: Nginx, cpu: str = "0") -> dict[str, float]:
    """Run cmd pinned to ``cpu`` under GNU time; return requests, wall, user, sys, rss_kb."""
    fd, tfname = tempfile.mkstemp()
    os.close(fd)
    r0 = nginx.requests()
    subprocess.run(
        ["taskset", "-c", cpu, "/usr/bin/time", "-f", "%e %U %S %M", "-o", tfname, *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=600,
    )
    r1 = nginx.requests()
    wall, usr, sys_, rss = (float(x) for x in Path(tfname).read_text().split()[-4:])
    os.unlink(tfname)
    n = r1 - r0 - 1
    return {
        "requests": n,
        "wall": wall,
        "user": usr,
        "sys": sys_,
        "rss_kb": rss,
        "rps": n / wall if wall else 0.0,
        "us_per_req": (usr + sys_) * 1e6 / n if n else 0.0,
        "user_us": usr * 1e6 / n if n else 0.0,
        "sys_us": sys_ * 1e6 / n if n else 0.0,
    }


def syscalls_per_req(cmd: list[str], nginx: Nginx) -> tuple[float, str]:
    """strace -c -f over a bounded run; (syscalls per request, top breakdown)."""
    fd, outname = tempfile.mkstemp()
    os.close(fd)
    r0 = nginx.requests()
    subprocess.run(
        ["taskset", "-c", "0", "strace", "-c", "-f", "-o", outname, *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=600,
    )
    n = nginx.requests() - r0 - 1
    text = Path(outname).read_text()
    os.unlink(outname)
    calls: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    total = sum(calls.values())
    hot = (
        "write",
        "writev",
        "sendto",
        "read",
        "recvfrom",
        "epoll_wait",
        "epoll_pwait",
        "epoll_ctl",
        "epoll_pwait2",
        "timerfd_settime",
        "poll",
    )
    parts = ", ".join(f"{k} {calls[k] / n:.2f}" for k in hot if k in calls and n)
    return (total / n if n else 0.0), parts


def corrected(row: dict[str, float], startup_cpu_s: float) -> dict[str, float]:
    """A run with the process start-up CPU (imports, argument parsing, report) subtracted, as the
    peers' measurements do for tools with a start-up cost: what remains is the cost per request."""
    out = dict(row)
    out["raw_us"] = row["us_per_req"]
    n = row["requests"]
    cpu = max(0.0, row["user"] + row["sys"] - startup_cpu_s)
    share = (row["user"] / (row["user"] + row["sys"])) if row["user"] + row["sys"] else 0.0
    out["us_per_req"] = cpu * 1e6 / n if n else 0.0
    out["user_us"] = cpu * share * 1e6 / n if n else 0.0
    out["sys_us"] = cpu * (1 - share) * 1e6 / n if n else 0.0
    return out


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "taskset", "strace", "/usr/bin/time"):
        if not shutil.which(tool):
            print(f"missing {tool}: apt-get install wrk nginx strace time util-linux", file=sys.stderr)
            return 2
    lg = [sys.executable, "-m", "loadgen", "load", "-quiet"]
    url = f"http://127.0.0.1:{PORT}/"
    d = f"{args.secs}s"
    report: list[str] = []
    say = report.append
    say(f"# loadgen vs wrk — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    say(
        f"Host: {os.cpu_count()} CPUs, {os.uname().release}. nginx pinned to CPU 1, clients to CPU 0; "
        f"{args.reps} interleaved repetitions of {args.secs} s; medians.\n"
    )

    nginx = Nginx()
    try:
        tools = {
            "wrk -t1 -c16": ["wrk", "-t1", "-c16", f"-d{d}", url],
            "loadgen c -threads 1 -c16": [
                *lg,
                "-engine",
                "c",
                "-threads",
                "1",
                "-c",
                "16",
                "-qps",
                "0",
                "-t",
                d,
                url,
            ],
            "wrk -t1 -c64": ["wrk", "-t1", "-c64", f"-d{d}", url],
            "loadgen c -threads 1 -c64": [
                *lg,
                "-engine",
                "c",
                "-threads",
                "1",
                "-c",
                "64",
                "-qps",
                "0",
                "-t",
                d,
                url,
            ],
        }
        # start-up CPU of a loadgen process (1 request), median of 3, subtracted below
        starts = [timed([*lg, "-engine", "c", "-n", "1", url], nginx) for _ in range(3)]
        startup = statistics.median(r["user"] + r["sys"] for r in starts)
        rows: dict[str, list[dict[str, float]]] = {k: [] for k in tools}
        for _ in range(args.reps):
            for name, cmd in tools.items():
                row = timed(cmd, nginx)
                rows[name].append(corrected(row, startup) if name.startswith("loadgen") else row)
        say("## Closed loop, one client thread (CPU per request)\n")
        say(
            f"loadgen's start-up CPU ({startup * 1000:.0f} ms, median of 3 one-request runs) is subtracted "
            "from its runs; wrk has none to speak of.\n"
        )
        say("| client | req/s | µs CPU/req | user µs | sys µs | uncorrected µs | ratio to wrk (CPU/req) |")
        say("|---|---|---|---|---|---|---|")
        for name in tools:
            ref = "wrk -t1 -c16" if "c16" in name else "wrk -t1 -c64"
            ratio = median(rows[name], "us_per_req") / median(rows[ref], "us_per_req")
            say(
                f"| {name} | {median(rows[name], 'rps'):,.0f} | {median(rows[name], 'us_per_req'):.2f} | "
                f"{median(rows[name], 'user_us'):.2f} | {median(rows[name], 'sys_us'):.2f} | "
                f"{statistics.median(r.get('raw_us', r['us_per_req']) for r in rows[name]):.2f} | "
                f"{ratio:.2f} |"
            )
        say("")
        # the pure-Python engine, for the record (shorter run)
        py = timed([*lg, "-engine", "py", "-c", "16", "-qps", "0", "-t", "3s", url], nginx)
        say(
            f"py engine -c16 (3 s, for the record): {py['rps']:,.0f} req/s, "
            f"{py['us_per_req']:.1f} µs CPU/req "
            f"({py['user_us']:.1f} user / {py['sys_us']:.1f} sys)\n"
        )

        say("## Syscalls per request (strace -c -f)\n")
        say("| client | syscalls/req | breakdown |")
        say("|---|---|---|")
        for name, cmd in (
            ("wrk -t1 -c16 -d2s", ["wrk", "-t1", "-c16", "-d2s", url]),
            (
                "loadgen c -c16 -n 100000",
                [*lg, "-engine", "c", "-threads", "1", "-c", "16", "-qps", "0", "-n", "100000", url],
            ),
        ):
            per, parts = syscalls_per_req(cmd, nginx)
            say(f"| {name} | {per:.2f} | {parts} |")
        say("")

        say("## Fixed rate accuracy (-qps 5000 -t 5s)\n")
        say(
            "Requests counted by nginx (minus the warm-up calls, one per connection) over the run's own "
            "measured duration (`ActualDuration` in the JSON, from the first send to the last response).\n"
        )
        say("| client | requested | nginx requests | duration s | achieved | error | late sends |")
        say("|---|---|---|---|---|---|---|")
        for c in (16, 64):
            fd, jpath = tempfile.mkstemp(suffix=".json")
            os.close(fd)
            res = timed([*lg, "-c", str(c), "-qps", "5000", "-t", "5s", "-json", jpath, url], nginx)
            doc = json.loads(Path(jpath).read_text())
            os.unlink(jpath)
            secs = doc["ActualDuration"] / 1e9
            n = res["requests"] - c
            achieved = n / secs if secs else 0.0
            late = doc["Loadgen"].get("Late", 0)
            say(
                f"| loadgen c -c{c} -qps 5000 -t 5s | 5000 | {n:,} | {secs:.3f} | {achieved:,.1f} | "
                f"{100 * (achieved - 5000) / 5000:+.2f} % | {late} |"
            )
        say("")

        say("## Start-up (wall time, median of 5)\n")
        walls_lg, walls_py = [], []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run(
                [*lg, "-n", "1", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
            )
            walls_lg.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=False)
            walls_py.append(time.perf_counter() - t)
        ml, mp = statistics.median(walls_lg), statistics.median(walls_py)
        say(
            f"`loadgen load -n 1`: {ml * 1000:.0f} ms; `python -c pass`: {mp * 1000:.0f} ms; "
            f"difference {1000 * (ml - mp):.0f} ms (target ≤ 300 ms)\n"
        )

        say("## Memory: 1,000,000 requests\n")
        big = timed([*lg, "-c", "16", "-qps", "0", "-n", "1000000", url], nginx)
        small = timed([*lg, "-c", "16", "-qps", "0", "-n", "10000", url], nginx)
        say(
            f"peak RSS with -n 1000000: {big['rss_kb'] / 1024:.1f} MB; "
            f"with -n 10000: {small['rss_kb'] / 1024:.1f} MB "
            f"(target < 150 MB, no growth with -n); {big['rps']:,.0f} req/s\n"
        )
    finally:
        nginx.stop()

    # client-bound: nginx on 2 workers over both CPUs, one client thread on CPU 0
    nginx = Nginx(workers=2, cpus="0,1")
    try:
        say("## Client-bound (nginx 2 workers on both CPUs, client one thread on CPU 0)\n")
        say("| client | req/s (median) |")
        say("|---|---|")
        cb = {
            "wrk -t1 -c32": ["wrk", "-t1", "-c32", f"-d{d}", url],
            "loadgen c -threads 1 -c32": [
                *lg,
                "-engine",
                "c",
                "-threads",
                "1",
                "-c",
                "32",
                "-qps",
                "0",
                "-t",
                d,
                url,
            ],
        }
        cbrows: dict[str, list[dict[str, float]]] = {k: [] for k in cb}
        for _ in range(args.reps):
            for name, cmd in cb.items():
                cbrows[name].append(timed(cmd, nginx))
        for name in cb:
            say(f"| {name} | {median(cbrows[name], 'rps'):,.0f} |")
        say("")
    finally:
        nginx.stop()

    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
