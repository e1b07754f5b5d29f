"""`loadgen load` end to end as a user runs it: report, JSON, HDR, signals, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from loadgen.serve import EchoServer

ENGINES = ["py", "c"]


def _engine_param(name: str) -> object:
    if name == "c":
        try:
            import loadgen._core  # noqa: F401
        except ImportError:
            return pytest.param(name, marks=pytest.mark.skip(reason="C engine not built"))
    return name


ENGINE_PARAMS = [_engine_param(e) for e in ENGINES]


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    srv = EchoServer(mode="process")
    srv.start()
    yield srv
    srv.stop()


def loadgen(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# fortio RunnerResults + HTTPRunnerResults fields and their JSON types (facts/fortio.md §3)
FORTIO_TYPES: dict[str, type | tuple[type, ...]] = {
    "RunType": str,
    "Labels": str,
    "StartTime": str,
    "RequestedQPS": str,
    "RequestedDuration": str,
    "ActualQPS": (int, float),
    "ActualDuration": int,
    "NumThreads": int,
    "Version": str,
    "DurationHistogram": dict,
    "ErrorsDurationHistogram": dict,
    "Exactly": int,
    "Jitter": bool,
    "Uniform": bool,
    "NoCatchUp": bool,
    "RunID": int,
    "AccessLoggerInfo": str,
    "ID": str,
    "RetCodes": dict,
    "IPCountMap": dict,
    "URL": str,
    "HTTPReqTimeOut": int,
    "Sizes": dict,
    "HeaderSizes": dict,
    "Sockets": list,
    "SocketCount": int,
    "ConnectionStats": dict,
    "AbortOn": int,
}


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_istio_task_load_report_and_json(echo: EchoServer, engine: str) -> None:
    proc = loadgen(
        "load", "-engine", engine, "-c", "3", "-qps", "0", "-n", "30", "-json", "-", f"{echo.url}/get"
    )
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "running at 0 queries per second" in err
    assert "for exactly 30 calls (10 per thread + 0)" in err
    assert "Code 200 : 30 (100.0 %)" in err
    assert "Sockets used: 3 (for perfect keepalive, would be 3)" in err
    assert "All done 30 calls (plus 0 warmup)" in err
    data = json.loads(proc.stdout)
    for key, typ in FORTIO_TYPES.items():
        assert key in data, key
        assert isinstance(data[key], typ), (key, data[key])
    assert data["RetCodes"] == {"200": 30}
    assert data["DurationHistogram"]["Count"] == 30
    assert data["RequestedQPS"] == "max"
    lg = data["Loadgen"]
    assert lg["Engine"] == engine
    for name in ("Latency", "ServiceTime"):
        h = HdrHistogram.decode(lg["Hdr"][name])
        assert h.get_total_count() == 30
    assert sum(s["Requests"] for s in lg["Timeline"]) == 30


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_fixed_rate_reports_intended_latency(echo: EchoServer, engine: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = loadgen(
        "load",
        "-engine",
        engine,
        "-c",
        "2",
        "-qps",
        "50",
        "-t",
        "1s",
        "-json",
        str(out),
        f"{echo.url}/?delay=5ms",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Latency from intended send time" in proc.stderr
    assert "Successfully wrote" in proc.stderr
    data = json.loads(out.read_text())
    assert data["RequestedQPS"] == "50"
    assert data["RetCodes"] == {"200": 50}
    # plus the 2 warm-up calls, which are not counted
    assert "(plus 2 warmup)" in proc.stderr
    assert data["DurationHistogram"]["Min"] >= 0.005
    lat = HdrHistogram.decode(data["Loadgen"]["Hdr"]["Latency"])
    svc = HdrHistogram.decode(data["Loadgen"]["Hdr"]["ServiceTime"])
    assert lat.get_value_at_percentile(50) >= svc.get_value_at_percentile(50) * 0.99


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_sigint_keeps_results(echo: EchoServer, engine: str, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadgen",
            "load",
            "-engine",
            engine,
            "-c",
            "2",
            "-qps",
            "200",
            "-t",
            "30s",
            "-json",
            str(out),
            echo.url + "/",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    data = json.loads(out.read_text())
    n = data["DurationHistogram"]["Count"]
    assert 50 < n < 2000
    assert sum(int(v) for v in data["RetCodes"].values()) == n
    assert "interrupted" in data["RequestedDuration"]
    assert data["Loadgen"]["Interrupted"] is True
    assert not list(tmp_path.glob("*.tmp*")), "no temporary file left behind"


def test_abort_on_exits_1(echo: EchoServer) -> None:
    proc = loadgen(
        "load", "-c", "1", "-qps", "0", "-n", "200", "-abort-on", "503", f"{echo.url}/?status=503:50"
    )
    assert proc.returncode == 1, proc.stderr
    assert "Code 503 : 1 " in proc.stderr
    assert "-abort-on 503" in proc.stderr


def test_autosave_hdr_log_and_access_log(echo: EchoServer, tmp_path: Path) -> None:
    hlog = tmp_path / "lat.hlog"
    alog = tmp_path / "access.jsonl"
    proc = loadgen(
        "load",
        "-c",
        "2",
        "-qps",
        "0",
        "-n",
        "20",
        "-a",
        "-data-dir",
        str(tmp_path),
        "-labels",
        "smoke test",
        "-hdr-out",
        str(hlog),
        "-access-log-file",
        str(alog),
        echo.url,
    )
    assert proc.returncode == 0, proc.stderr
    saved = [p for p in tmp_path.glob("*.json")]
    assert len(saved) == 1 and saved[0].name.endswith("_smoke_test.json")
    from hdrh.log import HistogramLogReader

    reader = HistogramLogReader(str(hlog), HdrHistogram(1, 3_600_000_000, 3))
    try:
        h = reader.get_next_interval_histogram()
        assert h is not None and h.get_total_count() == 20 and h.get_tag() == "intended"
        h2 = reader.get_next_interval_histogram()
        assert h2 is not None and h2.get_total_count() == 20 and h2.get_tag() == "service"
        assert h2.get_max_value() <= h.get_max_value()  # service time never exceeds intended-time latency
    finally:
        reader.close()
    lines = alog.read_text().splitlines()
    assert len(lines) == 20
    rec = json.loads(lines[0])
    assert rec["details"] == "200" and rec["ok"] is True and rec["latency"] > 0


def test_warmup_failure_exits_1(echo: EchoServer) -> None:
    proc = loadgen("load", "-c", "2", "-qps", "10", "-t", "1s", f"{echo.url}/?status=500")
    assert proc.returncode == 1
    assert "warm-up failed" in proc.stderr and "-allow-initial-errors" in proc.stderr
    proc = loadgen(
        "load", "-c", "2", "-qps", "10", "-t", "1s", "-allow-initial-errors", f"{echo.url}/?status=500"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Code 500 : 10 (100.0 %)" in proc.stderr


def test_curl(echo: EchoServer) -> None:
    proc = loadgen("curl", "-payload", "hello", f"{echo.url}/echo?header=x-test:yes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello"
    assert "HTTP/1.1 200" in proc.stderr
    assert "x-test: yes" in proc.stderr.lower()
    proc = loadgen("load", "-curl", f"{echo.url}/?status=503")
    assert proc.returncode == 1
    assert "HTTP/1.1 503" in proc.stderr


def test_credentials_not_written(echo: EchoServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = loadgen("load", "-n", "2", "-H", "Authorization: Bearer s3cr3t-token", "-json", str(out), echo.url)
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-token" not in out.read_text()
    assert "s3cr3t-token" not in proc.stderr


def test_env_engine_switch(echo: EchoServer) -> None:
    env = dict(os.environ, LOADGEN_ENGINE="py")
    proc = subprocess.run(
        [sys.executable, "-m", "loadgen", "load", "-n", "3", "-json", "-", echo.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Loadgen"]["Engine"] == "py"


def _stderr_on_a_tty(args: list[str]) -> str:
    import pty

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "loadgen", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the tty
                break
            if not data:
                break
            chunks.append(data)
        p.wait(30)
    finally:
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_line_on_a_tty_only(echo: EchoServer) -> None:
    url = echo.url + "/"
    text = _stderr_on_a_tty(["load", "-c", "2", "-qps", "40", "-t", "1s", url])
    assert "\r" in text and "calls" in text and "qps" in text and "errors" in text
    assert "/40 calls" in text  # done/total
    quiet = _stderr_on_a_tty(["load", "-quiet", "-c", "2", "-qps", "40", "-t", "1s", url])
    assert "/40 calls" not in quiet
