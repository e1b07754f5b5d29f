"""The single source of loadgen's version (keep in sync with ``pyproject.toml``)."""

from __future__ import annotations

__version__ = "0.1.0"
