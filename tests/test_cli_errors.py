"""User errors: one clear line on stderr, exit 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from loadgen.cli import main
from loadgen.errors import ResolveError


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


CASES = [
    (["load", "-zzz", "1", "http://127.0.0.1:1/"], "unknown flag -zzz"),
    (["load", "ftp://127.0.0.1/x"], "unsupported scheme 'ftp'"),
    (["load", "-c", "0", "http://127.0.0.1:1/"], "invalid -c 0"),
    (["load", "-c", "x", "http://127.0.0.1:1/"], "invalid value 'x' for -c"),
    (["load", "-t", "5 parsecs", "http://127.0.0.1:1/"], "invalid value '5 parsecs' for -t"),
    (["load", "-p", "50,100", "http://127.0.0.1:1/"], "invalid percentile '100'"),
    (["load", "-engine", "rust", "http://127.0.0.1:1/"], "unknown engine 'rust'"),
    (["load", "-engine", "c", "https://127.0.0.1:1/"], "needs -engine httpx"),
    (["load", "-payload-file", "/nonexistent/body.bin", "http://127.0.0.1:1/"], "cannot read -payload-file"),
    (["load", "-json", "/nonexistent-dir/out.json", "http://127.0.0.1:1/"], "does not exist"),
    (["load", "-H", "novalue", "http://127.0.0.1:1/"], "invalid header 'novalue'"),
    (["load", "-timeout", "0s", "http://127.0.0.1:1/"], "invalid -timeout"),
    (["load", "-loglevel", "Loud", "http://127.0.0.1:1/"], "invalid -loglevel 'Loud'"),
    (["load"], "no target URL given"),
    (["load", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], "expected one URL"),
    (["load", "-c"], "flag -c needs a value"),
    (["load", "http://127.0.0.1:99999/"], "Port out of range"),
    (["load", "-keepalive=maybe", "http://127.0.0.1:1/"], "invalid boolean 'maybe'"),
    (["frobnicate"], "unknown command 'frobnicate'"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_user_error_one_line_exit_2(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_unresolvable_host_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*a: object, **k: object) -> object:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert issubclass(ResolveError, Exception)
    code = main(["load", "-n", "1", "http://no-such-host.example:8080/"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot resolve host 'no-such-host.example'" in err


def test_all_refused_exits_1_with_report() -> None:
    port = free_port()
    proc = run_cli("load", "-engine", "py", "-c", "2", "-qps", "0", "-n", "4", f"http://127.0.0.1:{port}/")
    assert proc.returncode == 1, proc.stderr
    assert "Code  -1 : 4 (100.0 %)" in proc.stderr
    assert "connect_refused" in proc.stderr


def test_version_and_help() -> None:
    from loadgen.version import __version__

    for spelling in ("version", "--version", "-version"):
        proc = run_cli(spelling)
        assert proc.returncode == 0, (spelling, proc.stderr)
        assert proc.stdout.strip() == __version__
    proc = run_cli("help", "load")
    assert proc.returncode == 0
    for flag in ("-c ", "-qps", "-nocatchup", "-abort-on", "-hdr-out"):
        assert flag in proc.stdout
