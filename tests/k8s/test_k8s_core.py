"""Port-forward load, exec with loadgen and fortio, names, argv-only exec, no credential leaks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CERT_DATA, TOKEN, _collect_quietly, run_cli

from loadgen.errors import UsageError
from loadgen.k8s import names


def test_port_forward_load_counts_exact(kube, kubeconfig, tmp_path):
    before = kube.stream_count
    out = tmp_path / "r.json"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-c",
        "4",
        "-qps",
        "0",
        "-n",
        "200",
        "-json",
        str(out),
        "k8s://default/svc/httpbin:8000/echo?size=10",
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["RetCodes"] == {"200": 200}
    assert d["DurationHistogram"]["Count"] == 200
    assert "Host: httpbin.default.svc.cluster.local:8000" in p.stderr
    # one probe stream + one stream per connection
    assert kube.stream_count - before == 1 + 4
    pf = [r for r in kube.requests if "/portforward" in r[1]]
    assert pf[-1][1].startswith("/api/v1/namespaces/default/pods/httpbin-0/portforward?ports=8080")


def test_port_forward_dropped_stream_counted_and_recovered(kube, kubeconfig, tmp_path):
    first = kube.stream_count
    kube.drop_streams = {first + 2}  # probe = first; connections = first+1, first+2
    try:
        out = tmp_path / "r.json"
        p = run_cli(
            "load",
            "-kubeconfig",
            kubeconfig,
            "-c",
            "2",
            "-qps",
            "0",
            "-n",
            "60",
            "-json",
            str(out),
            "k8s://default/pod/httpbin-0:8000/echo",
            timeout=40,
        )
    finally:
        kube.drop_streams = set()
    d = json.loads(out.read_text())
    assert d["RetCodes"].get("200") == 59, d["RetCodes"]
    assert d["RetCodes"].get("-1") == 1
    assert sum(d["Loadgen"]["Errors"].values()) == 1
    assert kube.stream_count - first == 1 + 2 + 1  # the dropped connection was reopened
    assert p.returncode == 0


def test_port_forward_deploy_not_ready_and_missing(kube, kubeconfig):
    p = run_cli("load", "-kubeconfig", kubeconfig, "-n", "1", "k8s://default/pod/httpbin-1:8000/")
    assert p.returncode == 1 and "not ready" in p.stderr
    p = run_cli("load", "-kubeconfig", kubeconfig, "-n", "1", "k8s://default/pod/nope:8000/")
    assert p.returncode == 2 and 'pods "nope" not found' in p.stderr


def test_exec_with_loadgen(kube, kubeconfig, tmp_path):
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{kube.pods['default', 'httpbin-0'].ports[8000]}/echo"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-c",
        "3",
        "-qps",
        "0",
        "-n",
        "30",
        "-json",
        str(out),
        "-via",
        "exec://default/deploy/client",
        url,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["RetCodes"] == {"200": 30}
    assert d["Loadgen"]["Source"] == "loadgen"
    assert d["Loadgen"]["Extra"]["Tool"] == "loadgen"
    assert "All done 30 calls" in p.stderr
    argv = kube.exec_argv[-1]
    assert argv[:2] == ["loadgen", "load"] and argv[-3:] == ["-json", "-", url]
    assert ["loadgen", "version"] in kube.exec_argv


def test_exec_with_fortio(kube, kubeconfig, tmp_path, images):
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{kube.pods['default', 'httpbin-0'].ports[8000]}/echo"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-c",
        "3",
        "-qps",
        "0",
        "-n",
        "30",
        "-json",
        str(out),
        "-H",
        "X-Test: a b",
        "-via",
        "exec://default/deploy/fortio?container=fortio",
        url,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["RetCodes"] == {"200": 30}
    assert d["DurationHistogram"]["Count"] == 30
    assert d["Loadgen"]["Source"] == "fortio" and d["Loadgen"]["Extra"]["Tool"] == "fortio"
    last = json.loads(Path(images["argv_log"]).read_text().splitlines()[-1])
    assert last == ["load", "-c", "3", "-qps", "0", "-H", "X-Test: a b", "-n", "30", "-json", "-", url]
    # the probe found no loadgen first (kubelet InternalError without details), then fortio
    assert ["loadgen", "version"] in kube.exec_argv and ["fortio", "version"] in kube.exec_argv


def test_exec_without_tool(kube, kubeconfig):
    p = run_cli(
        "load", "-kubeconfig", kubeconfig, "-n", "3", "-via", "exec://default/pod/bare-0", "http://x:8000/"
    )
    assert p.returncode == 2 and "neither loadgen nor fortio" in p.stderr


def test_exec_is_argv_only(kube):
    from kubernetes import client

    from loadgen.k8s.client import Kube

    cfg = client.Configuration()
    cfg.host = kube.url
    cfg.api_key = {"authorization": f"Bearer {TOKEN}"}
    k = Kube(configuration=cfg)
    with pytest.raises(TypeError):
        k.exec("default", "bare-0", "echo hi; id")  # type: ignore[arg-type]
    r = k.exec("default", "bare-0", ["echo", "a;b", "$(id)"])
    assert r.rc == 0 and r.stdout == "a;b $(id)\n"  # no shell ran
    r = k.exec("default", "bare-0", ["sh", "-c", "exit 3"])
    assert r.rc == 3 and r.started
    r = k.exec("default", "bare-0", ["no-such-binary"])
    assert not r.started and "no-such-binary" in r.error
    k.close()
    _collect_quietly()


@pytest.mark.parametrize(
    "url",
    [
        "k8s://Default/svc/httpbin:8000/",
        "k8s://default/svc/http_bin:8000/",
        "k8s://default/svc/httpbin/",
        "k8s://default/job/x:80/",
        "k8s://-x/pod/a:80/",
        "k8s://default/pod/a..b:80/",
        "k8s://default/svc/" + "a" * 64 + ":80/",
    ],
)
def test_forward_url_validation(url):
    with pytest.raises(UsageError):
        names.parse_forward_url(url)


def test_names_accepted_and_rejected():
    f = names.parse_forward_url("k8s://ns-1/deploy/web.v2:8080/a/b?c=1")
    assert (f.namespace, f.kind, f.name, f.port, f.path) == ("ns-1", "deploy", "web.v2", 8080, "/a/b?c=1")
    e = names.parse_exec_url("exec://default/deploy/fortio?container=istio-proxy")
    assert (e.kind, e.name, e.container) == ("deploy", "fortio", "istio-proxy")
    for bad in (
        "exec://default/svc/x",
        "exec://default/pod/X",
        "exec://default/pod/x?container=A_B",
        "exec://default/pod/x?cmd=sh",
    ):
        with pytest.raises(UsageError):
            names.parse_exec_url(bad)
    j = names.parse_job_url("job://load?replicas=4&image=ghcr.io/x/loadgen:1&start=2")
    assert (j.namespace, j.replicas, j.image, j.start_s) == ("load", 4, "ghcr.io/x/loadgen:1", 2.0)
    for bad in ("job://load?replicas=0&image=i", "job://load?replicas=2", "job://Load?replicas=2&image=i"):
        with pytest.raises(UsageError):
            names.parse_job_url(bad)
    assert [names.split_evenly(10, 4, i) for i in range(4)] == [3, 3, 2, 2]


def test_no_token_or_cert_in_any_output(kube, kubeconfig, tmp_path):
    out, rep = tmp_path / "r.json", tmp_path / "r.md"
    url = f"http://127.0.0.1:{kube.pods['default', 'httpbin-0'].ports[8000]}/echo"
    runs = [
        run_cli(
            "load",
            "-kubeconfig",
            kubeconfig,
            "-n",
            "5",
            "-c",
            "1",
            "-json",
            str(out),
            "-report",
            str(rep),
            "-via",
            "exec://default/deploy/client",
            url,
        ),
        run_cli(
            "load",
            "-kubeconfig",
            kubeconfig,
            "-n",
            "5",
            "-c",
            "1",
            "-json",
            "-",
            "k8s://default/svc/httpbin:8000/echo",
        ),
        run_cli("load", "-kubeconfig", kubeconfig, "-n", "1", "k8s://default/pod/nope:8000/"),
    ]
    bad_kc = tmp_path / "bad"
    bad_kc.write_text(
        Path(kubeconfig).read_text().replace(f'"token": "{TOKEN}"', '"token": "wrong-token-zz"')
    )
    runs.append(run_cli("load", "-kubeconfig", str(bad_kc), "-n", "1", "k8s://default/pod/httpbin-0:8000/"))
    assert runs[0].returncode == 0 and runs[1].returncode == 0
    assert runs[3].returncode == 1 and "401" in runs[3].stderr
    texts = [r.stdout + r.stderr for r in runs] + [out.read_text(), rep.read_text()]
    for t in texts:
        assert TOKEN not in t and "wrong-token-zz" not in t and CERT_DATA not in t
        assert "Bearer" not in t
    assert any(m == "GET" and "/exec" in p for m, p in kube.requests)  # auth worked end to end
