"""A protocol-faithful stand-in kube-apiserver for the tests (aiohttp, plain HTTP on 127.0.0.1).

What it is: enough of the real REST and websocket protocols for the official ``kubernetes``
client to run unmodified: pods (label selectors), services + endpoints, deployments, pod exec
(websocket v5/v4 channels, exit status as a ``metav1.Status`` on channel 3, kubelet's
``InternalError`` without details when the command cannot start), pod port-forward (websocket v4:
initial ``[ch, lo, hi]`` frames, data/error channels, close when the pod side ends), pod logs,
Istio custom objects (v1/v1beta1/v1alpha3, server-side apply creates when absent, merge patch,
delete), and an emulated Indexed Job controller whose pods run their container command as local
processes (stdout+stderr = the pod log). Exec runs argv (never a shell) with ``PATH`` set to the
container's directories, so "which binaries does this container have" is a list of directories.

What it is not: no watches, no RBAC beyond an optional bearer token, no validation of specs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import itertools
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
ISTIO_KINDS = {"destinationrules": "DestinationRule", "virtualservices": "VirtualService"}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )


@dataclass
class Container:
    name: str
    path: list[str] = field(default_factory=list)  # the "image": directories on PATH
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Pod:
    namespace: str
    name: str
    labels: dict[str, str]
    containers: list[Container]
    ports: dict[int, int] = field(default_factory=dict)  # pod port -> local port
    phase: str = "Running"
    ready: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    log: bytearray = field(default_factory=bytearray)
    proc: Any = None
    uid: str = field(default_factory=lambda: secrets.token_hex(8))

    def to_json(self) -> dict[str, Any]:
        cond = "True" if self.ready and self.phase == "Running" else "False"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": self.labels,
                "annotations": self.annotations,
                "uid": self.uid,
                "resourceVersion": "1",
                "creationTimestamp": _now(),
            },
            "spec": {"containers": [{"name": c.name, "image": "stand-in"} for c in self.containers]},
            "status": {
                "phase": self.phase,
                "podIP": "127.0.0.1",
                "conditions": [
                    {"type": "Ready", "status": cond},
                    {"type": "ContainersReady", "status": cond},
                ],
                "containerStatuses": [
                    {
                        "name": c.name,
                        "image": "stand-in",
                        "imageID": "",
                        "ready": cond == "True",
                        "restartCount": 0,
                    }
                    for c in self.containers
                ],
            },
        }


def _selector_match(sel: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in sel.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeKube:
    """Start with :meth:`start` (a thread with its own event loop); ``url`` is the API server."""

    def __init__(self, token: str = "") -> None:
        self.token = token
        self.pods: dict[tuple[str, str], Pod] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, ns, name)
        self.disabled_versions: set[str] = set()
        self.on_object_change: Callable[[str, str, str, dict[str, Any] | None], None] | None = None
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.job_path: list[str] = []  # what job pods' "image" contains
        self.job_env: dict[str, str] = {}
        self.drop_streams: set[int] = set()  # port-forward stream numbers to cut after the first frame
        self.stream_count = 0
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.exec_argv: list[list[str]] = []
        self._rv = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- fixtures API ---------------------------------------------------------------------

    def add_pod(
        self,
        ns: str,
        name: str,
        labels: dict[str, str] | None = None,
        containers: list[Container] | None = None,
        ports: dict[int, int] | None = None,
        **kw: Any,
    ) -> Pod:
        p = Pod(ns, name, dict(labels or {}), containers or [Container("app")], dict(ports or {}), **kw)
        self.pods[ns, name] = p
        return p

    def add_service(self, ns: str, name: str, selector: dict[str, str], ports: list[dict[str, Any]]) -> None:
        self.services[ns, name] = {"selector": selector, "ports": ports}

    def add_deployment(self, ns: str, name: str, selector: dict[str, str]) -> None:
        self.deployments[ns, name] = {"selector": selector}

    def kubeconfig(self, path: str, token: str = "", cert_data: str = "") -> str:
        user: dict[str, Any] = {}
        if token:
            user["token"] = token
        if cert_data:
            user["client-certificate-data"] = cert_data
            user["client-key-data"] = cert_data
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [
                {"name": "stand-in", "context": {"cluster": "stand-in", "user": "u"}},
                {"name": "other", "context": {"cluster": "stand-in", "user": "u", "namespace": "x"}},
            ],
        }
        with open(path, "w") as fh:
            json.dump(doc, fh)
        return path

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeKube:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def go() -> None:
                self._runner = web.AppRunner(self.app(), handle_signals=False)
                await self._runner.setup()
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                await site.start()
                self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                ready.set()

            loop.run_until_complete(go())
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            loop.run_until_complete(asyncio.sleep(0.1))  # let closed transports finish closing
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fakekube")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake API server did not start")
        return self

    def stop(self) -> None:
        for p in list(self.pods.values()):
            self._kill(p)
        if self._loop is not None and self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @staticmethod
    def _kill(p: Pod) -> None:
        proc = p.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    # --- app ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        @web.middleware
        async def auth(req: web.Request, handler: Any) -> web.StreamResponse:
            self.requests.append((req.method, req.path_qs))
            if self.token and req.headers.get("Authorization") != f"Bearer {self.token}":
                return _status(401, "Unauthorized", "Unauthorized")
            return await handler(req)  # type: ignore[no-any-return]

        app = web.Application(middlewares=[auth])
        r = app.router
        r.add_get("/version", self.version)
        r.add_get("/apis/networking.istio.io", self.istio_group)
        r.add_get("/api/v1/namespaces/{ns}/pods", self.list_pods)
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}", self.get_pod)
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self.pod_log)
        r.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/exec", self.exec_)
        r.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/portforward", self.portforward)
        r.add_get("/api/v1/namespaces/{ns}/services/{name}", self.get_service)
        r.add_get("/api/v1/namespaces/{ns}/endpoints/{name}", self.get_endpoints)
        r.add_get("/apis/apps/v1/namespaces/{ns}/deployments/{name}", self.get_deployment)
        r.add_post("/apis/batch/v1/namespaces/{ns}/jobs", self.create_job)
        r.add_get("/apis/batch/v1/namespaces/{ns}/jobs/{name}", self.get_job)
        r.add_get("/apis/batch/v1/namespaces/{ns}/jobs/{name}/status", self.get_job)
        r.add_delete("/apis/batch/v1/namespaces/{ns}/jobs/{name}", self.delete_job)
        base = "/apis/networking.istio.io/{version}/namespaces/{ns}/{plural}"
        r.add_get(base, self.list_objects)
        r.add_post(base, self.create_object)
        r.add_get(base + "/{name}", self.get_object)
        r.add_patch(base + "/{name}", self.patch_object)
        r.add_put(base + "/{name}", self.put_object)
        r.add_delete(base + "/{name}", self.delete_object)
        return app

    async def version(self, req: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0-stand-in"})

    async def istio_group(self, req: web.Request) -> web.Response:
        vs = [v for v in ISTIO_VERSIONS if v not in self.disabled_versions]
        gv = [{"groupVersion": f"{ISTIO_GROUP}/{v}", "version": v} for v in vs]
        return web.json_response(
            {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": ISTIO_GROUP,
                "versions": gv,
                "preferredVersion": gv[0],
            }
        )

    # pods -------------------------------------------------------------------------------------

    async def list_pods(self, req: web.Request) -> web.Response:
        ns, sel = req.match_info["ns"], req.query.get("labelSelector", "")
        items = [
            p.to_json()
            for (n, _), p in sorted(self.pods.items())
            if n == ns and _selector_match(sel, p.labels)
        ]
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": str(next(self._rv))},
                "items": items,
            }
        )

    def _pod(self, req: web.Request) -> Pod | None:
        return self.pods.get((req.match_info["ns"], req.match_info["name"]))

    async def get_pod(self, req: web.Request) -> web.Response:
        p = self._pod(req)
        if p is None:
            return _status(404, "NotFound", f'pods "{req.match_info["name"]}" not found')
        return web.json_response(p.to_json())

    async def pod_log(self, req: web.Request) -> web.Response:
        p = self._pod(req)
        if p is None:
            return _status(404, "NotFound", f'pods "{req.match_info["name"]}" not found')
        return web.Response(body=bytes(p.log), content_type="text/plain")

    # services, deployments ------------------------------------------------------------------------

    async def get_service(self, req: web.Request) -> web.Response:
        ns, name = req.match_info["ns"], req.match_info["name"]
        s = self.services.get((ns, name))
        if s is None:
            return _status(404, "NotFound", f'services "{name}" not found')
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": s["selector"], "ports": s["ports"], "clusterIP": "10.0.0.1"},
            }
        )

    async def get_endpoints(self, req: web.Request) -> web.Response:
        ns, name = req.match_info["ns"], req.match_info["name"]
        s = self.services.get((ns, name))
        if s is None:
            return _status(404, "NotFound", f'endpoints "{name}" not found')
        pods = [
            p
            for (n, _), p in sorted(self.pods.items())
            if n == ns and s["selector"].items() <= p.labels.items()
        ]
        ready = [p for p in pods if p.ready and p.phase == "Running"]
        ports = [
            {"name": sp.get("name", ""), "port": sp.get("targetPort", sp["port"]), "protocol": "TCP"}
            for sp in s["ports"]
        ]
        addr = [
            {"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "name": p.name, "namespace": ns}} for p in ready
        ]
        subsets = [{"addresses": addr, "ports": ports}] if addr else []
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns},
                "subsets": subsets,
            }
        )

    async def get_deployment(self, req: web.Request) -> web.Response:
        ns, name = req.match_info["ns"], req.match_info["name"]
        d = self.deployments.get((ns, name))
        if d is None:
            return _status(404, "NotFound", f'deployments.apps "{name}" not found')
        tmpl = {
            "metadata": {"labels": d["selector"]},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
        }
        return web.json_response(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": {"matchLabels": d["selector"]}, "template": tmpl},
            }
        )

    # exec ----------------------------------------------------------------------------------------

    def _env(self, c: Container, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "PYTHONPATH", "TMPDIR")}
        env["PATH"] = os.pathsep.join([*c.path, "/usr/bin", "/bin"])
        env.update(c.env)
        env.update(extra or {})
        return env

    async def exec_(self, req: web.Request) -> web.StreamResponse:
        p = self._pod(req)
        if p is None:
            return _status(404, "NotFound", f'pods "{req.match_info["name"]}" not found')
        q = req.query
        argv = q.getall("command", [])
        cname = q.get("container", p.containers[0].name)
        cont = next((c for c in p.containers if c.name == cname), None)
        if cont is None:
            return _status(400, "BadRequest", f"container {cname} is not valid for pod {p.name}")
        self.exec_argv.append(list(argv))
        flag = lambda k: q.get(k, "false").lower() in ("true", "1")  # noqa: E731
        ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
        await ws.prepare(req)
        pipe = asyncio.subprocess.PIPE
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=pipe if flag("stdin") else asyncio.subprocess.DEVNULL,
                stdout=pipe,
                stderr=pipe,
                env=self._env(cont),
                start_new_session=True,
            )
        except OSError as e:
            st = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "code": 500,
                "reason": "InternalError",
                "message": f"error executing command in container: {e}",
            }
            await ws.send_bytes(b"\x03" + json.dumps(st).encode())
            await ws.close()
            return ws

        async def pump(stream: Any, ch: int) -> None:
            while data := await stream.read(65536):
                await ws.send_bytes(bytes([ch]) + data)

        async def read_client() -> None:
            async for msg in ws:
                data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
                if not data or proc.stdin is None:
                    continue
                if data[0] == 0:
                    proc.stdin.write(data[1:])
                    await proc.stdin.drain()
                elif data[0] == 255 and data[1:2] == b"\x00":
                    proc.stdin.close()

        reader = asyncio.create_task(read_client())
        try:
            await asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))
            rc = await proc.wait()
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if rc == 0:
            st = {"metadata": {}, "status": "Success"}
        else:
            st = {
                "metadata": {},
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: exit status {rc}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]},
            }
        await ws.send_bytes(b"\x03" + json.dumps(st).encode())
        await ws.close()
        reader.cancel()
        return ws

    # port-forward --------------------------------------------------------------------------------

    async def portforward(self, req: web.Request) -> web.StreamResponse:
        p = self._pod(req)
        if p is None:
            return _status(404, "NotFound", f'pods "{req.match_info["name"]}" not found')
        ports = [int(x) for v in req.query.getall("ports", []) for x in v.split(",")]
        number = self.stream_count
        self.stream_count += 1
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(req)
        for i, port in enumerate(ports):
            pb = port.to_bytes(2, "little")
            await ws.send_bytes(bytes([2 * i]) + pb)
            await ws.send_bytes(bytes([2 * i + 1]) + pb)
        writers: list[Any] = []
        pumps = []

        async def pump(i: int, reader: asyncio.StreamReader) -> None:
            while data := await reader.read(65536):
                await ws.send_bytes(bytes([2 * i]) + data)

        for i, port in enumerate(ports):
            try:
                r, w = await asyncio.open_connection("127.0.0.1", p.ports.get(port, port))
            except OSError as e:
                await ws.send_bytes(
                    bytes([2 * i + 1])
                    + f"error forwarding port {port} to pod {p.name}, uid {p.uid}: {e}".encode()
                )
                writers.append(None)
                continue
            writers.append(w)
            pumps.append(asyncio.create_task(pump(i, r)))
        done = asyncio.gather(*pumps, return_exceptions=True)
        done.add_done_callback(lambda _: asyncio.ensure_future(ws.close()))
        if not pumps:
            await ws.close()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY and msg.data and msg.data[0] % 2 == 0:
                    if number in self.drop_streams:  # fault: the stream dies with a request in flight
                        break
                    idx = msg.data[0] // 2
                    w = writers[idx] if idx < len(writers) else None
                    if w is not None:
                        w.write(msg.data[1:])
                        await w.drain()
        finally:
            for w in writers:
                if w is not None:
                    w.transport.abort()
        for t in pumps:
            t.cancel()
        await ws.close()
        return ws

    # Istio custom objects (server-side apply) ---------------------------------------------------------

    def _cr_key(self, req: web.Request) -> tuple[str, str, str] | web.Response:
        v, plural = req.match_info["version"], req.match_info["plural"]
        if v in self.disabled_versions or v not in ISTIO_VERSIONS or plural not in ISTIO_KINDS:
            return _status(404, "NotFound", "the server could not find the requested resource")
        return plural, req.match_info["ns"], req.match_info.get("name", "")

    def _out(self, obj: dict[str, Any], version: str) -> dict[str, Any]:
        o = copy.deepcopy(obj)
        o["apiVersion"] = f"{ISTIO_GROUP}/{version}"
        return o

    def _store(
        self, key: tuple[str, str, str], body: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        plural, ns, name = key
        meta = dict(body.get("metadata") or {})
        meta.update({"name": name, "namespace": ns, "resourceVersion": str(next(self._rv))})
        if existing:
            meta["uid"] = existing["metadata"]["uid"]
            meta["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
            meta["generation"] = existing["metadata"].get("generation", 1) + 1
        else:
            meta.update({"uid": secrets.token_hex(8), "creationTimestamp": _now(), "generation": 1})
        obj = {
            "apiVersion": f"{ISTIO_GROUP}/v1",
            "kind": ISTIO_KINDS[plural],
            "metadata": meta,
            "spec": body.get("spec", {}),
        }
        self.objects[key] = obj
        if self.on_object_change:
            self.on_object_change(plural, ns, name, copy.deepcopy(obj))
        return obj

    async def list_objects(self, req: web.Request) -> web.Response:
        k = self._cr_key(req)
        if isinstance(k, web.Response):
            return k
        items = [
            self._out(o, req.match_info["version"])
            for (pl, ns, _), o in sorted(self.objects.items())
            if pl == k[0] and ns == k[1]
        ]
        return web.json_response(
            {
                "apiVersion": f"{ISTIO_GROUP}/{req.match_info['version']}",
                "kind": ISTIO_KINDS[k[0]] + "List",
                "metadata": {},
                "items": items,
            }
        )

    async def get_object(self, req: web.Request) -> web.Response:
        k = self._cr_key(req)
        if isinstance(k, web.Response):
            return k
        o = self.objects.get(k)
        if o is None:
            return _status(404, "NotFound", f'{k[0]}.{ISTIO_GROUP} "{k[2]}" not found')
        return web.json_response(self._out(o, req.match_info["version"]))

    async def create_object(self, req: web.Request) -> web.Response:
        k = self._cr_key(req)
        if isinstance(k, web.Response):
            return k
        body = await req.json()
        key = (k[0], k[1], body["metadata"]["name"])
        if key in self.objects:
            return _status(409, "AlreadyExists", f'{k[0]}.{ISTIO_GROUP} "{key[2]}" already exists')
        return web.json_response(
            self._out(self._store(key, body, None), req.match_info["version"]), status=201
        )

    async def put_object(self, req: web.Request) -> web.Response:
        k = self._cr_key(req)
        if isinstance(k, web.Response):
            return k
        if k not in self.objects:
            return _status(404, "NotFound", f'{k[0]}.{ISTIO_GROUP} "{k[2]}" not found')
        return web.json_response(
            self._out(self._store(k, await req.json(), self.objects[k]), req.match_info["version"])
        )

    async def patch_object(self, req: web.Request) -> web.Response:
        k = self._cr_key(req)
        if isinstance(k, web.Response):
            return k
        ctype = req.headers.get("Content-Type", "")
        existing = self.objects.get(k)
        body = json.loads(await req.read())
        if ctype.startswith("application/apply-patch"):
            if not req.query.get("fieldManager"):
                return _status(422, "Invalid", "fieldManager is required for apply patch")
            if body.get("metadata", {}).get("name") != k[2]:
                return _status(400, "BadRequest", "the name of the object does not match the URL")
            return web.json_response(
                self._out(self._store(k, body, existing), req.match_info["version"]),
                status=200 if existing else 201,
            )
        if ctype.startswith("application/merge-patch"):
            if existing is None:
                return _status(404, "NotFound", f'{k[0]}.{ISTIO_GROUP} "{k[2]}" not found')
            merged = _merge_patch(copy.deepcopy(existing), body)
            return web.json_response(self._out(self._store(k, merged, existing), req.match_info["version"]))
        return _status(
            415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}"
        )

    async def delete_object(self, req: web.Request) -> web.Response:
        k = self._cr_key(req)
        if isinstance(k, web.Response):
            return k
        o = self.objects.pop(k, None)
        if o is None:
            return _status(404, "NotFound", f'{k[0]}.{ISTIO_GROUP} "{k[2]}" not found')
        if self.on_object_change:
            self.on_object_change(k[0], k[1], k[2], None)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})

    # Jobs ------------------------------------------------------------------------------------------

    async def create_job(self, req: web.Request) -> web.Response:
        ns = req.match_info["ns"]
        body = await req.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.jobs:
            return _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
        spec = body["spec"]
        if spec.get("completionMode") != "Indexed":
            return _status(422, "Invalid", "the stand-in only runs Indexed Jobs")
        uid = secrets.token_hex(8)
        body["metadata"].update(
            {"namespace": ns, "uid": uid, "resourceVersion": str(next(self._rv)), "creationTimestamp": _now()}
        )
        body["status"] = {"active": int(spec["completions"]), "startTime": _now()}
        job = {"obj": body, "pods": []}
        self.jobs[ns, name] = job
        tmpl = spec["template"]["spec"]
        c0 = tmpl["containers"][0]
        for i in range(int(spec["completions"])):
            pname = f"{name}-{i}-{secrets.token_hex(3)[:5]}"
            labels = {
                "job-name": name,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "batch.kubernetes.io/job-completion-index": str(i),
            }
            pod = self.add_pod(
                ns,
                pname,
                labels,
                [Container(c0["name"], self.job_path)],
                phase="Pending",
                annotations={"batch.kubernetes.io/job-completion-index": str(i)},
            )
            env = {e["name"]: e.get("value", "") for e in c0.get("env") or []}
            env.update(self.job_env)
            env.update({"JOB_COMPLETION_INDEX": str(i), "HOSTNAME": f"{name}-{i}"})
            job["pods"].append(pod)
            argv = [*(c0.get("command") or []), *(c0.get("args") or [])]
            job.setdefault("tasks", []).append(asyncio.ensure_future(self._run_pod(pod, argv, env)))
        job["tasks"].append(asyncio.ensure_future(self._watch_job(job)))
        return web.json_response(body, status=201)

    async def _run_pod(self, pod: Pod, argv: list[str], env: dict[str, str]) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env(pod.containers[0], env),
                start_new_session=True,
            )
        except OSError as e:
            pod.log += f"exec: {e}\n".encode()
            pod.phase = "Failed"
            return
        pod.proc = proc
        pod.phase = "Running"
        assert proc.stdout is not None
        while data := await proc.stdout.read(65536):
            pod.log += data
        rc = await proc.wait()
        pod.phase = "Succeeded" if rc == 0 else "Failed"
        pod.ready = False

    async def _watch_job(self, job: dict[str, Any]) -> None:
        pods: list[Pod] = job["pods"]
        while any(p.phase in ("Pending", "Running") for p in pods):
            await asyncio.sleep(0.05)
        ok = [p for p in pods if p.phase == "Succeeded"]
        st = job["obj"]["status"]
        st.update(
            {
                "active": 0,
                "succeeded": len(ok),
                "failed": len(pods) - len(ok),
                "completionTime": _now(),
                "completedIndexes": ",".join(
                    p.labels["batch.kubernetes.io/job-completion-index"] for p in ok
                ),
            }
        )
        kind = "Complete" if len(ok) == len(pods) else "Failed"
        st["conditions"] = [
            {"type": kind, "status": "True", "lastProbeTime": _now(), "lastTransitionTime": _now()}
        ]

    async def get_job(self, req: web.Request) -> web.Response:
        j = self.jobs.get((req.match_info["ns"], req.match_info["name"]))
        if j is None:
            return _status(404, "NotFound", f'jobs.batch "{req.match_info["name"]}" not found')
        return web.json_response(j["obj"])

    async def delete_job(self, req: web.Request) -> web.Response:
        ns, name = req.match_info["ns"], req.match_info["name"]
        j = self.jobs.pop((ns, name), None)
        if j is None:
            return _status(404, "NotFound", f'jobs.batch "{name}" not found')
        if req.query.get("propagationPolicy", "") in ("Background", "Foreground"):
            for p in j["pods"]:
                self._kill(p)
                self.pods.pop((p.namespace, p.name), None)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = _merge_patch(target.get(k), v)
    return target


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
