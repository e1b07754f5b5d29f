"""loadgen: a fortio-compatible HTTP load generator with a Cython core.

Public API (imports are lazy so that ``loadgen load`` starts fast)::

    from loadgen import LoadOptions, execute
    result, exit_code = execute(LoadOptions(url="http://127.0.0.1:8080/", exactly=100, qps=0))

See :mod:`loadgen.engine_api` for the engine seam and :mod:`loadgen.results` for the result model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loadgen.version import __version__

if TYPE_CHECKING:
    from loadgen.engine_api import EngineConfig, EngineResult
    from loadgen.options import LoadOptions
    from loadgen.results import RunResult
    from loadgen.runner import execute

__all__ = ["EngineConfig", "EngineResult", "LoadOptions", "RunResult", "__version__", "execute"]

_LAZY = {
    "EngineConfig": "loadgen.engine_api",
    "EngineResult": "loadgen.engine_api",
    "LoadOptions": "loadgen.options",
    "RunResult": "loadgen.results",
    "execute": "loadgen.runner",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'loadgen' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
