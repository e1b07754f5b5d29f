"""``loadgen k8s SUBCOMMAND``: ``manifests`` (print a client Deployment) and ``worker`` (inside Job pods).

What it is not: the load itself (``loadgen load ... k8s://…`` / ``-via exec://…`` / ``-via job://…``).
"""

from __future__ import annotations

import sys

from loadgen.errors import UsageError

USAGE = """\
usage: loadgen k8s manifests [-namespace NS] [-image IMAGE]   print a meshed client Deployment
       loadgen k8s worker -replicas N -start-at UNIX -- FLAGS URL   (run by -via job:// pods)
"""


def k8s_main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "manifests":
        return _manifests(rest)
    if cmd == "worker":
        from loadgen.k8s.job import worker_main

        return worker_main(rest)
    raise UsageError(f"k8s: unknown subcommand {cmd!r} (manifests, worker)")


def _manifests(argv: list[str]) -> int:
    from loadgen.k8s.manifests import DEFAULT_IMAGE, client_deployment

    ns, image = "default", DEFAULT_IMAGE
    i = 0
    while i < len(argv):
        a = argv[i].lstrip("-")
        val = None
        if "=" in a:
            a, val = a.split("=", 1)
        if a not in ("namespace", "n", "image"):
            raise UsageError(f"k8s manifests: unknown flag {argv[i]!r} (-namespace, -image)")
        if val is None:
            if i + 1 >= len(argv):
                raise UsageError(f"k8s manifests: flag -{a} needs a value")
            val = argv[i + 1]
            i += 1
        i += 1
        if a == "image":
            image = val
        else:
            ns = val
    try:
        sys.stdout.write(client_deployment(ns, image))
    except ValueError as exc:
        raise UsageError(f"k8s manifests: {exc}") from None
    return 0
