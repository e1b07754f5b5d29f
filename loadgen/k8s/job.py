"""Scale-out on Kubernetes' own machinery: an Indexed Job of N loadgen pods, merged into one result.

What it is:
    * :func:`job_manifest` — an Indexed Job (``completions = parallelism = N``, ``backoffLimit: 0``,
      ``restartPolicy: Never``) whose pods run ``loadgen k8s worker``; the pod template has the
      stats annotation and asks for Istio's native sidecar (so a meshed pod can finish), and the
      worker also POSTs the sidecar's ``/quitquitquit`` on :15020 when it is done.
    * :func:`worker_main` — in each pod: its share from ``JOB_COMPLETION_INDEX`` (``qps/N``; ``n``
      and ``c`` split with the remainder on the lowest indexes), wait for the common wall-clock
      start, run, print one ``LOADGEN-RESULT {json}`` line (pod logs mix stdout and stderr).
    * :func:`run_job` — create, wait (polling the Job status, bounded), read the pods' logs, merge
      (HDR histograms, codes, timelines, Envoy deltas), mark the window in which all pods overlapped
      in ``Loadgen.Extra.Overlap``, delete the Job (also when interrupted) unless ``keep``.

What it is not: no per-pod Services or barrier through the API (the start time is fixed at
creation, ``start=`` seconds ahead; a pod that starts late still runs, and the overlap shows it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import sys
import time
import urllib.request
from typing import Any, TextIO

from loadgen.errors import RunError, UsageError
from loadgen.k8s.client import Kube
from loadgen.k8s.names import JobURL, split_evenly
from loadgen.k8s.sidecar import PROXY_CONFIG
from loadgen.options import LoadOptions
from loadgen.results import RunResult, merge, requested_qps_str

MARKER = "LOADGEN-RESULT "
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def share(opts: LoadOptions, replicas: int, index: int) -> LoadOptions:
    """The options pod ``index`` of ``replicas`` runs with."""
    if not 0 <= index < replicas:
        raise UsageError(f"worker index {index} is not in 0..{replicas - 1}")
    c = max(1, split_evenly(opts.connections, replicas, index))
    qps = opts.qps / replicas if opts.qps > 0 else opts.qps
    n = split_evenly(opts.exactly, replicas, index) if opts.exactly else 0
    return dataclasses.replace(
        opts,
        connections=c,
        qps=qps,
        exactly=n,
        json_path="",
        auto_save=False,
        report_path="",
        hdr_out="",
        access_log_file="",
    )


def job_name() -> str:
    return f"loadgen-{time.strftime('%m%d%H%M%S')}-{secrets.token_hex(2)}"


def job_manifest(
    name: str, target: JobURL, load_args: list[str], start_at: float, deadline_s: int
) -> dict[str, Any]:
    n = target.replicas
    stats_cfg = PROXY_CONFIG
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "loadgen",
                "image": target.image,
                "command": [
                    "loadgen",
                    "k8s",
                    "worker",
                    "-replicas",
                    str(n),
                    "-start-at",
                    f"{start_at:.3f}",
                    "--",
                    *load_args,
                ],
                "env": [{"name": "LOADGEN_QUIT_SIDECAR", "value": "1"}],
            }
        ],
    }
    if target.service_account:
        pod_spec["serviceAccountName"] = target.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "loadgen", "app.kubernetes.io/component": "worker"},
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_s,
            "template": {
                "metadata": {
                    "labels": {"app.kubernetes.io/name": "loadgen", "sidecar.istio.io/inject": "true"},
                    "annotations": {
                        "sidecar.istio.io/nativeSidecar": "true",
                        "proxy.istio.io/config": stats_cfg,
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def parse_log(text: str, pod: str) -> RunResult:
    for line in reversed(text.splitlines()):
        if line.startswith(MARKER):
            try:
                return RunResult.from_json(json.loads(line[len(MARKER) :]))
            except ValueError as exc:
                raise RunError(f"pod {pod}: malformed result line: {exc}") from None
    tail = "\n".join(text.strip().splitlines()[-5:])
    raise RunError(f"pod {pod} printed no result line; last log lines:\n{tail}")


def overlap(results: list[RunResult]) -> dict[str, float]:
    starts = [r.engine_result.start_wall for r in results]
    ends = [r.engine_result.start_wall + r.engine_result.elapsed_ns / 1e9 for r in results]
    s, e = max(starts), min(ends)
    return {
        "StartUnix": s,
        "EndUnix": e,
        "Seconds": max(0.0, e - s),
        "StartSpread": max(starts) - min(starts),
    }


def _sum_envoy(results: list[RunResult]) -> dict[str, Any] | None:
    parts = [r.envoy for r in results if r.envoy and isinstance(r.envoy.get("Deltas"), dict)]
    if not parts:
        return None
    total: dict[str, dict[str, int]] = {}
    for p in parts:
        for cluster, stats in p["Deltas"].items():
            d = total.setdefault(cluster, {})
            for k, v in stats.items():
                if isinstance(v, int):
                    d[k] = d.get(k, 0) + v  # counters add; per-pod gauges are summed too (N Envoys)
    return {"Deltas": total, "MergedFrom": len(parts), "Note": "sum over the pods' own sidecars"}


def merge_pods(results: list[RunResult], opts: LoadOptions, info: dict[str, Any]) -> RunResult:
    """One result from the pods' results, with the user's options and the overlap window."""
    merged = merge(results)
    merged = dataclasses.replace(
        merged,
        options=opts,
        requested_qps=requested_qps_str(opts.qps),
        labels=opts.labels or merged.labels,
        envoy=_sum_envoy(results),
    )
    merged.extra.update(info)
    merged.extra["Overlap"] = overlap(results)
    merged.extra["Pods"] = [
        {
            "Index": r.extra.get("Index"),
            "Count": r.count,
            "StartUnix": r.engine_result.start_wall,
            "Seconds": r.engine_result.elapsed_ns / 1e9,
        }
        for r in results
    ]
    return merged


def run_job(kube: Kube, target: JobURL, opts: LoadOptions, err: TextIO, keep: bool = False) -> RunResult:
    from loadgen.k8s.remote import load_argv

    n = target.replicas
    if opts.exactly and opts.exactly < n:
        raise UsageError(f"-n {opts.exactly} is less than replicas={n}: every pod needs at least one call")
    if not opts.exactly and opts.duration_s <= 0:
        raise UsageError("-via job needs -t > 0 or -n: a run until interrupted cannot be collected")
    run_s = opts.duration_s if not opts.exactly else 600.0
    timeout = target.timeout_s or (target.start_s + run_s + opts.timeout_s + 120.0)
    name = job_name()
    start_at = time.time() + target.start_s
    body = job_manifest(
        name, target, load_argv(opts, "loadgen", json_out=False)[2:], start_at, int(timeout) + 60
    )
    ns = target.namespace
    kube.call(f"create job {ns}/{name}", kube.batch.create_namespaced_job, ns, body)
    err.write(
        f"Created Job {ns}/{name}: {n} pods start at {time.strftime('%H:%M:%S', time.localtime(start_at))}\n"
    )
    try:
        status = _wait(kube, ns, name, timeout)
        pods = kube.pods_by_selector(ns, f"job-name={name}")
        by_index: dict[int, Any] = {}
        for p in pods:
            idx = int(
                (p.metadata.labels or {}).get(
                    INDEX_LABEL, (p.metadata.annotations or {}).get(INDEX_LABEL, -1)
                )
            )
            by_index[idx] = p
        results: list[RunResult] = []
        problems: list[str] = []
        for i in range(n):
            p = by_index.get(i)
            if p is None:
                problems.append(f"index {i}: no pod")
                continue
            log = kube.call(
                f"read log of pod {ns}/{p.metadata.name}",
                kube.core.read_namespaced_pod_log,
                p.metadata.name,
                ns,
                container="loadgen",
            )
            try:
                r = parse_log(str(log), p.metadata.name)
            except RunError as exc:
                problems.append(str(exc))
                continue
            r.extra["Index"] = i
            results.append(r)
        if problems or status != "Complete":
            raise RunError(
                f"Job {ns}/{name} {status.lower()}: " + "; ".join(problems or ["see the pod logs"])
            )
        info = {
            "Via": f"job://{ns}",
            "Job": {
                "Name": name,
                "Namespace": ns,
                "Replicas": n,
                "StartAt": start_at,
                "Image": target.image,
                "Pods": [by_index[i].metadata.name for i in range(n)],
            },
        }
        return merge_pods(results, opts, info)
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                kube.call(
                    f"delete job {ns}/{name}",
                    kube.batch.delete_namespaced_job,
                    name,
                    ns,
                    propagation_policy="Background",
                )
        else:
            err.write(f"Kept Job {ns}/{name} (-keep)\n")


def _wait(kube: Kube, ns: str, name: str, timeout: float) -> str:
    end = time.monotonic() + timeout
    while True:
        job = kube.call(f"get job {ns}/{name}", kube.batch.read_namespaced_job_status, name, ns)
        for c in (job.status.conditions or []) if job.status else []:
            if c.status == "True" and c.type in ("Complete", "Failed"):
                return str(c.type)
        if time.monotonic() > end:
            raise RunError(f"Job {ns}/{name} did not finish within {timeout:.0f}s")
        time.sleep(0.25)


# --- the worker, inside each pod ---------------------------------------------------------------


def worker_main(argv: list[str]) -> int:
    """``loadgen k8s worker -replicas N -start-at UNIX [-index I] -- LOAD FLAGS... URL``."""
    from loadgen.cli.flags import to_options
    from loadgen.cli.load import _parse
    from loadgen.runner import execute

    if "--" not in argv:
        raise UsageError(
            "worker: usage: loadgen k8s worker -replicas N -start-at UNIX [-index I] -- FLAGS URL"
        )
    cut = argv.index("--")
    own, load = argv[:cut], argv[cut + 1 :]
    kv = dict(zip(own[::2], own[1::2], strict=False))
    try:
        replicas = int(kv.get("-replicas", "1"))
        start_at = float(kv.get("-start-at", "0"))
        index = int(kv.get("-index", os.environ.get("JOB_COMPLETION_INDEX", "0")))
    except ValueError:
        raise UsageError("worker: -replicas, -start-at and -index must be numbers") from None
    values, url = _parse(load, "load")
    values.pop("curl", None)
    opts = share(to_options(values, url), replicas, index)
    wait = start_at - time.time()
    if wait > 0:
        sys.stderr.write(f"worker {index}/{replicas}: starting in {wait:.2f}s\n")
        sys.stderr.flush()
        time.sleep(wait)
    else:
        sys.stderr.write(f"worker {index}/{replicas}: started {-wait:.2f}s late\n")
    try:
        result, code = execute(opts, err=sys.stderr, out=sys.stderr, progress=False)
        result.extra["Index"] = index
        sys.stdout.write(MARKER + json.dumps(result.to_json(), separators=(",", ":")) + "\n")
        sys.stdout.flush()
    finally:
        if os.environ.get("LOADGEN_QUIT_SIDECAR") == "1":
            _quit_sidecar()
    return code


def _quit_sidecar() -> None:
    """Tell a classic (non-native) Istio sidecar to exit so the Job can complete; ignore any failure."""
    url = os.environ.get("LOADGEN_SIDECAR_QUIT_URL", "http://127.0.0.1:15020/quitquitquit")
    req = urllib.request.Request(url, method="POST", data=b"")
    with contextlib.suppress(Exception):
        urllib.request.urlopen(req, timeout=1.0).close()
