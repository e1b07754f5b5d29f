"""``loadgen stats ADMIN_URL [-cluster REGEX] [-format text|json]``: print the catalogue stats.

What it is: the command behind ``loadgen stats`` (the dispatcher calls :func:`stats_main` with the
arguments after ``stats``): one snapshot of the Envoy admin at ADMIN_URL, then, per cluster whose
name matches REGEX (``re.search``; all when empty), every circuit-breaker/overflow/outlier stat of
the catalogue (absent counters read 0), and the fault stats per HTTP connection manager.

What it is not: no deltas over time (that is ``loadgen load -envoy-admin``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from loadgen.envoy import catalogue
from loadgen.envoy import stats as st
from loadgen.envoy.admin import AdminClient
from loadgen.errors import LoadgenError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"stats: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="loadgen stats",
        add_help=True,
        description="Print Envoy's circuit-breaker, overflow, outlier and fault stats per cluster.",
    )
    p.add_argument("admin_url", metavar="ADMIN_URL", help="Envoy admin, e.g. http://127.0.0.1:15000")
    p.add_argument("-cluster", default="", metavar="REGEX", help="only clusters whose name matches")
    p.add_argument("-format", default="text", choices=("text", "json"), help="output format")
    return p


def render(snap: st.Snapshot, cluster_regex: str, out: TextIO) -> None:
    names = snap.matching(cluster_regex)
    if not names:
        out.write("no cluster matched" + (f" /{cluster_regex}/" if cluster_regex else "") + "\n")
    width = max(len(s.name) for s in catalogue.CLUSTER_CATALOGUE)
    for c in names:
        out.write(f"cluster {c}\n")
        for s in catalogue.CLUSTER_CATALOGUE:
            present = s.name in snap.clusters[c]
            out.write(
                f"  {s.name:<{width}}  {snap.get(c, s.name):>12}  {s.kind}"
                + ("" if present else "  (absent)")
                + "\n"
            )
    for prefix in sorted(snap.http):
        faults = [s for s in catalogue.HTTP_CATALOGUE if s.name in snap.http[prefix]]
        if any(s.name.startswith("fault.") for s in faults):
            out.write(f"http {prefix}\n")
            for s in faults:
                out.write(f"  {s.name:<{width}}  {snap.get_http(prefix, s.name):>12}  {s.kind}\n")


def stats_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        a = _parser().parse_args(argv)
        st.compile_regex(a.cluster)
        with AdminClient(a.admin_url) as client:
            snap = client.snapshot()
        if a.format == "json":
            doc = st.catalogue_view(snap, a.cluster) | {"Admin": client.url}
            json.dump(doc, out, indent=2, sort_keys=True)
            out.write("\n")
        else:
            render(snap, a.cluster, out)
        return 0
    except LoadgenError as e:
        err.write(f"loadgen: {e}\n")
        return e.exit_code


if __name__ == "__main__":
    sys.exit(stats_main(sys.argv[1:]))
