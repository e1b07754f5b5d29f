"""Fuzz target for the C engine's HTTP/1.x response parser (``loadgen._core._fuzz_parse``).

What it is: an atheris (libFuzzer) target, and a tiny pure-Python random mutator over the same
:func:`check_one` for machines without atheris. Each input is one control byte followed by the
response bytes: bit 0 of the control byte says the request was HEAD, bits 1-7 choose a read
size (0: everything at once, else 1..127 bytes per read), so the parser is also exercised
across read boundaries. Besides "no crash" (with the ASan build from ``scripts/fuzz``: no
out-of-bounds access, no use-after-free) it checks properties that must hold for every input:

* the result is well-formed (status in done/more/bad, 0 <= consumed <= len, a complete
  response has a status code 100..999 and a head no longer than what it consumed);
* the outcome does not depend on how the bytes were split into reads (same status, and for a
  complete response the same code, head size and consumed length).

What it is not: a differential test against another parser (that is
``tests/robust/test_differential.py``, against h11).

Run: ``scripts/fuzz --time 60`` (ASan build, atheris), or ``python tests/fuzz/fuzz_parser.py
--mutate 30`` (pure-Python mutator, the build in ``loadgen/``). ``LOADGEN_CORE_SO`` points at
an alternative build of the extension (the ASan one) to load as ``loadgen._core``.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_parser() -> Callable[..., tuple[str, int, int, int, bool, bool]]:
    """``_fuzz_parse`` from ``$LOADGEN_CORE_SO`` when set, else from the normal build."""
    so = os.environ.get("LOADGEN_CORE_SO")
    if so:
        spec = importlib.util.spec_from_file_location("loadgen._core", so)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["loadgen._core"] = mod
        spec.loader.exec_module(mod)
    else:
        import loadgen._core as mod
    fn: Callable[..., tuple[str, int, int, int, bool, bool]] = mod._fuzz_parse
    return fn


PARSE = load_parser()


def check_one(data: bytes) -> str:
    """Parse one fuzz input every way; raise AssertionError on a broken property."""
    if not data:
        return "empty"
    head = bool(data[0] & 1)
    split = data[0] >> 1
    resp = data[1:]
    whole = PARSE(resp, head, 0)
    status, code, hbytes, consumed, _close, _keep = whole
    assert status in ("done", "more", "bad"), whole
    assert 0 <= consumed <= len(resp), whole
    if status == "done":
        assert 100 <= code <= 999 and 0 < hbytes <= consumed, whole
    if split:
        part = PARSE(resp, head, split)
        assert part[0] == status, (whole, part, split)
        if status == "done":
            assert part == whole, (whole, part, split)
        elif status == "more":
            assert part[4] == whole[4], (whole, part, split)
    return status


def seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CORPUS.iterdir()) if p.is_file()]


# --- the pure-Python mutator (no atheris) ----------------------------------------------------
_TOKENS = [
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b":",
    b" ",
    b"\t",
    b";",
    b"0\r\n\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"100 Continue\r\n\r\n",
    b"FFFFFFFFFFFFFFFFFFFF",
    b"-1",
    b"Connection: close\r\n",
    b"\x00",
    b"\xff",
    b"9" * 20,
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        pos = rng.randint(0, len(b))
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = rng.choice(_TOKENS)
        elif op == 2 and b:
            del b[pos : pos + rng.randint(1, 16)]
        elif op == 3 and b:
            j = rng.randrange(len(b))
            b[pos:pos] = b[j : j + rng.randint(1, 32)]
        elif op == 4:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif b:
            b[0] = rng.randrange(256)  # the control byte: HEAD and read size
    return bytes(b[:8192])


def run_mutator(seconds: float, seed: int = 0, max_execs: int = 0) -> dict[str, Any]:
    """Mutate the corpus for ``seconds`` (or ``max_execs`` inputs); returns counts."""
    rng = random.Random(seed or time.time_ns())
    pool = seeds()
    counts = {"done": 0, "more": 0, "bad": 0, "empty": 0}
    execs = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and (not max_execs or execs < max_execs):
        data = mutate(rng, rng.choice(pool))
        try:
            counts[check_one(data)] += 1
        except AssertionError:
            sys.stderr.write(f"property failed for input {data!r}\n")
            raise
        execs += 1
        if execs % 97 == 0 and len(pool) < 2000:
            pool.append(data)
    return {"execs": execs, **counts}


def TestOneInput(data: bytes) -> None:
    check_one(data)


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--mutate":
        out = run_mutator(float(sys.argv[2]))
        print(out)
        return
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_func(check_one)  # Python-side feedback: which outcome, which property
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
