"""``python -m loadgen.serve``: the ``loadgen serve`` command."""

import sys

from loadgen.serve.cli import serve_main

raise SystemExit(serve_main(sys.argv[1:]))
