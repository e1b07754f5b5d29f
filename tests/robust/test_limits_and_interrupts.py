"""Resource limits and interrupts: -c above the open-file limit, SIGINT/SIGTERM at random points."""

from __future__ import annotations

import json
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.serve import EchoServer


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    srv = EchoServer(mode="process")
    srv.start()
    yield srv
    srv.stop()


def _limited(soft: int, hard: int) -> object:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def _run(args: list[str], soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited(soft, hard),
    )  # type: ignore[arg-type]


def test_c_above_the_hard_limit_is_refused_in_one_line(echo: EchoServer) -> None:
    p = _run(["load", "-c", "400", "-qps", "0", "-n", "400", echo.url], soft=256, hard=256)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "-c 400 needs about 464 open files but the limit is 256" in lines[0]


def test_c_above_the_soft_limit_raises_it(echo: EchoServer) -> None:
    p = _run(["load", "-c", "400", "-qps", "0", "-n", "800", "-json", "-", echo.url], soft=256, hard=4096)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["RetCodes"] == {"200": 800}
    assert d["SocketCount"] == 400


@pytest.mark.slow
def test_signals_at_random_points_always_leave_complete_results(echo: EchoServer, tmp_path: Path) -> None:
    rng = random.Random(20261126)
    for i in range(8):
        engine = ("c", "py")[i % 2]
        sig = (signal.SIGINT, signal.SIGTERM)[(i // 2) % 2]
        out = tmp_path / f"run{i}.json"
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loadgen",
                "load",
                "-engine",
                engine,
                "-c",
                "4",
                "-qps",
                "400",
                "-t",
                "30s",
                "-json",
                str(out),
                echo.url + "/?delay=1ms",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        try:
            time.sleep(rng.uniform(0.2, 1.5))
            p.send_signal(sig)
            _, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, (engine, sig, err)
        assert "Traceback" not in err
        assert "All done" in err, err  # the complete report
        d = json.loads(out.read_text())
        n = d["DurationHistogram"]["Count"]
        assert sum(int(v) for v in d["RetCodes"].values()) == n
        assert sum(s["Requests"] for s in d["Loadgen"]["Timeline"]) == n
        assert d["Loadgen"]["Interrupted"] is True
        assert not [x for x in tmp_path.iterdir() if ".tmp" in x.name]


def test_authorization_never_reaches_any_output(echo: EchoServer, tmp_path: Path) -> None:
    secret = "s3cr3t-T0KEN-42"
    files = {
        "json": tmp_path / "r.json",
        "log": tmp_path / "access.jsonl",
        "html": tmp_path / "r.html",
        "md": tmp_path / "r.md",
        "hdr": tmp_path / "r.hlog",
    }
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadgen",
            "load",
            "-c",
            "2",
            "-qps",
            "0",
            "-n",
            "10",
            "-H",
            f"Authorization: Bearer {secret}",
            "-H",
            f"Cookie: session={secret}",
            "-H",
            f"Proxy-Authorization: Basic {secret}",
            "-json",
            str(files["json"]),
            "-access-log-file",
            str(files["log"]),
            "-report",
            str(files["html"]),
            "-hdr-out",
            str(files["hdr"]),
            "-loglevel",
            "Debug",
            f"http://user:{secret}@127.0.0.1:{echo.port}/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    subprocess.run(
        [sys.executable, "-m", "loadgen", "report", str(files["json"]), "-md", str(files["md"])],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert secret not in p.stdout + p.stderr
    for name, f in files.items():
        assert f.exists(), name
        assert secret not in f.read_text(errors="replace"), name
    assert "REDACTED" in files["json"].read_text()


def test_a_full_disk_is_refused_before_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the probe file next to -json hits ENOSPC: the run must not start (no engine, exit 2)
    import errno
    import os

    from loadgen import runner
    from loadgen.errors import UsageError
    from loadgen.options import LoadOptions

    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        if len(data) >= 1024:  # the probe's 4 KB block, not pytest's own small writes
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    started: list[object] = []
    monkeypatch.setattr(runner.engines, "start", lambda *a, **k: started.append(a))
    with pytest.raises(UsageError, match="No space left on device"):
        runner.execute(LoadOptions(url="http://127.0.0.1:9/", exactly=1, json_path=str(tmp_path / "r.json")))
    assert not started
    assert not list(tmp_path.iterdir())  # no probe left behind
