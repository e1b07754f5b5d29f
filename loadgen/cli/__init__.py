"""The ``loadgen`` command: dispatch to subcommands and translate errors to exit codes.

Exit codes: 0 success; 1 the run failed (partial report kept); 2 bad input (one line, no
traceback); 130 interrupted before a run started. Subcommands parse their own flags; nothing
here knows how a load runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from loadgen.errors import LoadgenError

USAGE = """\
usage: loadgen COMMAND [flags] [args]

commands:
  load [flags] URL     run a load (fortio's flags: -c -qps -t -n ...); 'loadgen help load'
  curl [flags] URL     fetch once and print the response (same as load -curl)
  serve [flags]        run the echo test server on 127.0.0.1 (fortio's echo query params)
  stats ADMIN_URL      print Envoy's circuit-breaker, outlier and fault stats per cluster
  report RUNS... -o F  one offline HTML (and -md) report over run JSON files: verdicts, charts, tables
  sweep [flags] URL    the same load over a grid of -c/-qps and policy -variant files; trip points, SLO
  k8s manifests        Kubernetes helpers (client Deployment with the stats annotation, image)
  lab SUBCOMMAND       a local Envoy lab from Istio YAML: up, status, apply, config, show, run, down
  version              print the version
  help [COMMAND]       this text, or a command's flags
"""


def _cmd_load(argv: list[str]) -> int:
    from loadgen.cli.load import load_main

    return load_main(argv)


def _cmd_curl(argv: list[str]) -> int:
    from loadgen.cli.load import curl_main

    return curl_main(argv)


def _cmd_serve(argv: list[str]) -> int:
    from loadgen.serve import serve_main

    return serve_main(argv)


def _cmd_stats(argv: list[str]) -> int:
    from loadgen.envoy.cli import stats_main

    return stats_main(argv)


def _cmd_lab(argv: list[str]) -> int:
    from loadgen.lab.cli import lab_main

    return lab_main(argv)


def _cmd_report(argv: list[str]) -> int:
    from loadgen.report import report_main

    return report_main(argv)


def _cmd_sweep(argv: list[str]) -> int:
    from loadgen.sweep import sweep_main

    return sweep_main(argv)


def _cmd_k8s(argv: list[str]) -> int:
    from loadgen.k8s.cli import k8s_main

    return k8s_main(argv)


def _cmd_version(argv: list[str]) -> int:
    from loadgen.version import __version__

    print(__version__)
    return 0


def _cmd_help(argv: list[str]) -> int:
    if not argv:
        print(USAGE, end="")
        return 0
    if argv[0] in ("load", "curl"):
        from loadgen.cli.load import load_help

        print(load_help())
        return 0
    fn = COMMANDS.get(argv[0])
    if fn is None or argv[0] == "help":
        print(f"loadgen: unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    if argv[0] == "version":
        print("usage: loadgen version")
        return 0
    return fn(["-h"])


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "load": _cmd_load,
    "curl": _cmd_curl,
    "serve": _cmd_serve,
    "stats": _cmd_stats,
    "lab": _cmd_lab,
    "report": _cmd_report,
    "sweep": _cmd_sweep,
    "k8s": _cmd_k8s,
    "version": _cmd_version,
    "help": _cmd_help,
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "-help"):
        print(USAGE, end="")
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd in ("--version", "-version"):  # what people type first
        cmd = "version"
    fn = COMMANDS.get(cmd)
    if fn is None:
        print(f"loadgen: unknown command {cmd!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    try:
        return fn(rest)
    except LoadgenError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
