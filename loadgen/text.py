"""Small wording helpers shared by the reports and the command lines."""

from __future__ import annotations


def plural(n: int, word: str, many: str = "") -> str:
    """``1 run``, ``2 runs`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


__all__ = ["plural"]
