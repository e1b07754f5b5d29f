"""The exception tree of loadgen, translated to exit codes at the CLI boundary.

    LoadgenError            base of everything loadgen raises on purpose
    ├── UsageError          bad input from the user (flag, URL, file, YAML): exit 2, one line
    │   └── ResolveError    the target host does not resolve
    └── RunError            the run itself failed (abort-on hit, every call failed,
                            warm-up failed, an engine failed to start): exit 1, partial report kept

Lower layers raise these with a message meant for a person; the CLI prints ``loadgen: <message>``
and exits with :attr:`LoadgenError.exit_code`. Nothing else is caught there, so a genuine bug
still shows its traceback.
"""

from __future__ import annotations


class LoadgenError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(LoadgenError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2


class ResolveError(UsageError):
    """The host of the target URL does not resolve."""


class RunError(LoadgenError):
    """The run started but failed (exit 1); whatever was measured is still reported."""

    exit_code = 1


class EnvoyAdminError(RunError):
    """The Envoy admin endpoint could not be read (refused, timed out, bad status, bad body)."""
