"""What ``loadgen lab`` commands write besides their own lines: a JSON document (on stdout and, with
``-json PATH``, to that file) and warnings (on stderr, one line each)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from loadgen.errors import UsageError


def emit_json(doc: dict[str, Any], dest: str | None, out: IO[str]) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if dest and dest != "-":
        try:
            Path(dest).write_text(text)
        except OSError as exc:
            raise UsageError(f"-json {dest}: cannot write ({exc.strerror})") from None
    out.write(text)


def warn(lines: Sequence[str]) -> None:
    for w in lines:
        print(f"loadgen lab: warning: {w}", file=sys.stderr)
