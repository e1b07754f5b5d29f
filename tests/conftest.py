"""Shared fixtures: engines to parametrize over and in-test servers (helpers are in ``servers.py``).

``engine`` runs a test on every raw HTTP/1 engine ("py" always, "c" when ``loadgen._core`` is
built); ``any_engine`` adds "httpx" for the tests whose semantics it shares. Servers bind to
127.0.0.1 and are stopped at teardown.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings as _hyp_settings

# CI runs property tests on a fixed sequence of examples (a red CI run must be reproducible);
# developers get fresh random examples on every run.
_hyp_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    _hyp_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Gunicorn, Script, ScriptedServer, refused_port, self_signed_cert  # noqa: E402

_MODULES = {"py": "loadgen._engine_py", "c": "loadgen._core", "httpx": "loadgen._engine_httpx"}


def _load(name: str) -> ModuleType:
    if name == "c":
        return pytest.importorskip("loadgen._core", reason="C engine not built")
    return importlib.import_module(_MODULES[name])


@pytest.fixture(params=["py", "c"])
def engine(request: pytest.FixtureRequest) -> ModuleType:
    """An HTTP/1 engine module with ``start(cfg)``."""
    return _load(request.param)


@pytest.fixture(params=["py", "c", "httpx"])
def any_engine(request: pytest.FixtureRequest) -> ModuleType:
    """Any engine module, httpx included."""
    return _load(request.param)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    """Factory: ``scripted(script, on_accept=...)`` starts a server; all are stopped at teardown."""
    started: list[ScriptedServer] = []

    def make(script: Script, **kw: Any) -> ScriptedServer:
        s = ScriptedServer(script, **kw).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def httpbin() -> Iterator[Gunicorn]:
    g = Gunicorn().start()
    yield g
    g.stop()


@pytest.fixture(scope="session")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server-side SSLContext with a fresh self-signed certificate for 127.0.0.1."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    cert, key = self_signed_cert(str(tmp_path_factory.mktemp("tls")))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
def closed_port() -> int:
    return refused_port()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port whose accept queue is full: new connects hang in SYN_SENT (a connect timeout)."""
    import socket
    import time

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port: int = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    time.sleep(0.05)
    yield port
    for f in fillers:
        f.close()
    lsock.close()
