"""``loadgen load`` and ``loadgen curl``: parse flags into LoadOptions and hand over to the runner."""

from __future__ import annotations

import sys

from loadgen.cli.flags import FlagSet, to_options
from loadgen.errors import UsageError
from loadgen.options import LOAD_FLAGS, Flag

_EXTRA = (Flag("curl", "curl", "bool", "false", "Fetch once and print the response instead of a load"),)
_FLAGS = FlagSet(LOAD_FLAGS + _EXTRA)


def load_help() -> str:
    lines = ["usage: loadgen load [flags] URL", "", "flags (fortio's names; --long forms work too):"]
    for f in LOAD_FLAGS + _EXTRA:
        default = f" (default {f.default})" if f.default not in ("", "false") else ""
        lines.append(f"  -{f.name:<22} {f.help}{default}")
    return "\n".join(lines)


def _parse(argv: list[str], cmd: str) -> tuple[dict[str, object], str]:
    values, positional = _FLAGS.parse(argv)
    if not positional:
        raise UsageError(f"{cmd}: no target URL given (usage: loadgen {cmd} [flags] URL)")
    if len(positional) > 1:
        raise UsageError(f"{cmd}: expected one URL, got {len(positional)}: {' '.join(positional)}")
    return values, positional[0]


def load_main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "-help", "--help"):
        print(load_help())
        return 0
    values, url = _parse(argv, "load")
    if values.pop("curl", False):
        return _curl(values, url)
    opts = to_options(values, url)
    from loadgen.runner import execute

    _, code = execute(opts)
    return code


def curl_main(argv: list[str]) -> int:
    values, url = _parse(argv, "curl")
    values.pop("curl", None)
    return _curl(values, url)


def _curl(values: dict[str, object], url: str) -> int:
    from loadgen.curl import fetch

    opts = to_options(values, url)
    return fetch(opts, sys.stdout.buffer, sys.stderr)
