"""A meshed Job pod can finish: the template asks for Istio's native sidecar, and the worker
POSTs the classic sidecar's quit endpoint when its load is done (even when the load failed)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loadgen.k8s.job import job_manifest
from loadgen.k8s.names import parse_job_url

ROOT = Path(__file__).resolve().parents[2]


def test_job_template_asks_for_a_native_sidecar() -> None:
    m = job_manifest(
        "lg-1", parse_job_url("job://default?replicas=3&image=img:1"), ["-n", "9", "http://x/"], 0.0, 60
    )
    tpl = m["spec"]["template"]
    assert tpl["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"
    assert "cluster.outbound" in tpl["metadata"]["annotations"]["proxy.istio.io/config"]
    env = {e["name"]: e["value"] for e in tpl["spec"]["containers"][0]["env"]}
    assert env["LOADGEN_QUIT_SIDECAR"] == "1"
    assert m["spec"]["completionMode"] == "Indexed" and m["spec"]["completions"] == 3


def test_worker_quits_the_classic_sidecar_when_done() -> None:
    posts: list[str] = []

    class Quit(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Quit)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            LOADGEN_QUIT_SIDECAR="1",
            LOADGEN_SIDECAR_QUIT_URL=f"http://127.0.0.1:{srv.server_port}/quitquitquit",
        )
        # the load itself fails (nothing listens on port 9): the sidecar must be told to quit anyway
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "loadgen",
                "k8s",
                "worker",
                "-replicas",
                "1",
                "-start-at",
                "0",
                "--",
                "-n",
                "2",
                "-qps",
                "0",
                "http://127.0.0.1:9/",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert p.returncode == 1, p.stderr
        assert posts == ["/quitquitquit"]
    finally:
        srv.shutdown()
        srv.server_close()
