"""The one place an engine is chosen: from the ``-engine`` flag, ``LOADGEN_ENGINE`` and the URL.

* ``c``: the Cython epoll engine (:mod:`loadgen._core`); the default for ``http://``.
* ``py``: the pure-Python twin (:mod:`loadgen._engine_py`); used automatically when the
  extension is not built (``LOADGEN_NO_EXTENSIONS=1`` at install time), with a warning.
* ``httpx``: for ``https://``, ``-h2`` and ``-stdclient`` (:mod:`loadgen._engine_httpx`).

Engines are imported lazily so that ``loadgen load`` starts fast.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from loadgen.engine_api import EngineConfig, EngineHandle
from loadgen.errors import UsageError

ENGINES = ("c", "py", "httpx")
_MODULES = {"c": "loadgen._core", "py": "loadgen._engine_py", "httpx": "loadgen._engine_httpx"}


def c_available() -> bool:
    """True when the compiled extension imports."""
    try:
        importlib.import_module("loadgen._core")
    except ImportError:
        return False
    return True


def choose(requested: str, scheme: str, *, h2: bool = False, stdclient: bool = False) -> tuple[str, str]:
    """Return ``(engine name, warning or "")`` for a run.

    ``requested`` is the ``-engine`` flag value ("" = not given); ``LOADGEN_ENGINE`` is read when
    the flag is empty. Raises :class:`UsageError` for an unknown or impossible choice.
    """
    name = (requested or os.environ.get("LOADGEN_ENGINE", "")).strip().lower()
    if name and name not in ENGINES:
        raise UsageError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    needs_httpx = scheme == "https" or h2 or stdclient
    if needs_httpx:
        if name in ("c", "py"):
            why = "https" if scheme == "https" else ("-h2" if h2 else "-stdclient")
            raise UsageError(f"engine {name!r} speaks plain HTTP/1.x only; {why} needs -engine httpx")
        return "httpx", ""
    if not name:
        if c_available():
            return "c", ""
        return "py", "the compiled engine is not built; using the pure-Python engine (slower)"
    if name == "c" and not c_available():
        raise UsageError(
            "engine 'c' is not built in this installation (reinstall without LOADGEN_NO_EXTENSIONS)"
        )
    return name, ""


def module(name: str) -> ModuleType:
    return importlib.import_module(_MODULES[name])


def start(name: str, cfg: EngineConfig) -> EngineHandle:
    """Start ``cfg`` on engine ``name`` and return its handle."""
    handle: EngineHandle = module(name).start(cfg)
    return handle
