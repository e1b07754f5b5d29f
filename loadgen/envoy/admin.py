"""A small stdlib client for Envoy's admin API on a loopback address.

What it is: one persistent ``http.client`` connection to ``http://127.0.0.1:<port>`` (reopened
once when the server closed it), with a timeout, returning text or parsed JSON, and raising
:class:`~loadgen.errors.EnvoyAdminError` naming the URL on any failure. :meth:`AdminClient.snapshot`
is the cheap reading the observer takes during a run: ``/stats?format=json`` filtered server-side
to the catalogue's stat families (measured ~2-4 ms on the lab's Envoy).

What it is not: no mutation (``/reset_counters``, ``/quitquitquit`` are POST and not offered), no
parsing beyond JSON (see :mod:`loadgen.envoy.stats`). Loopback only: the admin API is unauthenticated,
and a sidecar's admin is reached through ``kubectl port-forward`` to localhost anyway.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.parse
from typing import Any

from loadgen.envoy import stats as st
from loadgen.errors import EnvoyAdminError, UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")

#: Server-side filter (RE2, partial match) keeping the catalogue's stat families and the anchors
#: the name splitter needs; cuts a lab-sized /stats from ~400 to ~100 entries per cluster.
SNAPSHOT_FILTER = (
    r"^cluster\..*\.(upstream_rq_|upstream_cx_|circuit_breakers\.|outlier_detection\.|"
    r"membership_total|lb_healthy_panic)|^http\..*\.(fault\.|downstream_rq_)"
)


def parse_admin_url(url: str) -> tuple[str, int, str]:
    """``http://127.0.0.1:15000`` (or ``127.0.0.1:15000``) → (host, port, normalised URL)."""
    raw = url if "://" in url else "http://" + url
    u = urllib.parse.urlsplit(raw)
    if u.scheme != "http":
        raise UsageError(f"Envoy admin URL {url!r}: only http:// is supported")
    try:
        port = u.port
    except ValueError:
        port = None
    if not u.hostname or port is None:
        raise UsageError(f"Envoy admin URL {url!r} needs a host and a port, e.g. http://127.0.0.1:15000")
    if u.hostname not in LOOPBACK:
        raise UsageError(
            f"Envoy admin URL {url!r}: only loopback admin addresses are allowed "
            f"({', '.join(LOOPBACK)}); port-forward a remote admin first"
        )
    host = u.hostname
    shown = f"[{host}]" if ":" in host else host
    return host, port, f"http://{shown}:{port}"


class AdminClient:
    """Envoy admin API over one keep-alive connection. Not thread-safe; one per observer."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.host, self.port, self.url = parse_admin_url(url)
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: dict[str, str] | None = None) -> str:
        """GET ``path`` (with query ``params``) and return the body; any failure → EnvoyAdminError."""
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        full = self.url + target
        last: Exception | None = None
        for attempt in range(2):  # a kept-alive connection may have been closed by Envoy: retry once
            fresh = self._conn is None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                self._conn.request("GET", target)
                r = self._conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                last = e
                if fresh or attempt == 1 or isinstance(e, TimeoutError):
                    break
                continue
            if r.status != 200:
                raise EnvoyAdminError(f"Envoy admin {full}: HTTP {r.status} {body[:200]!r}")
            return body.decode("utf-8", "replace")
        raise EnvoyAdminError(f"cannot reach Envoy admin {self.url} ({path}): {_why(last)}")

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        text = self.get(path, params)
        try:
            return json.loads(text)
        except ValueError as e:
            raise EnvoyAdminError(f"Envoy admin {self.url}{path}: not JSON ({e}): {text[:120]!r}") from None

    # --- endpoints --------------------------------------------------------------------------

    def get_stats_text(self, filter: str | None = None, usedonly: bool = False) -> str:
        return self.get("/stats", _params(filter, usedonly))

    def get_stats_json(self, filter: str | None = None, usedonly: bool = False) -> Any:
        return self.get_json("/stats", {"format": "json", **_params(filter, usedonly)})

    def get_prometheus(self, filter: str | None = None, usedonly: bool = False) -> str:
        return self.get("/stats/prometheus", _params(filter, usedonly))

    def ready(self) -> bool:
        """True when ``/ready`` answers 200 ``LIVE``; False when it answers otherwise or not at all."""
        try:
            return self.get("/ready").strip() == "LIVE"
        except EnvoyAdminError:
            return False

    def server_info(self) -> dict[str, Any]:
        info = self.get_json("/server_info")
        if not isinstance(info, dict):
            raise EnvoyAdminError(f"Envoy admin {self.url}/server_info: not a JSON object")
        return info

    def version(self) -> str:
        """Envoy's version, e.g. ``1.40.0`` (from ``/server_info``)."""
        v = str(self.server_info().get("version", ""))
        parts = v.split("/")
        return parts[1] if len(parts) > 1 else v

    def config_dump(self) -> dict[str, Any]:
        d = self.get_json("/config_dump")
        if not isinstance(d, dict):
            raise EnvoyAdminError(f"Envoy admin {self.url}/config_dump: not a JSON object")
        return d

    def snapshot(self, filter: str | None = SNAPSHOT_FILTER) -> st.Snapshot:
        """One :class:`~loadgen.envoy.stats.Snapshot` from ``/stats?format=json`` (server-side filtered).

        The timestamps are taken when the request is sent (the stats are read at that moment).
        """
        wall, mono = time.time(), time.monotonic()
        doc = self.get_stats_json(filter)
        try:
            return st.snapshot_from_json(doc, wall=wall, mono=mono)
        except st.StatsParseError as e:
            raise EnvoyAdminError(f"Envoy admin {self.url}/stats?format=json: {e}") from None


def _params(filter: str | None, usedonly: bool) -> dict[str, str]:
    p: dict[str, str] = {}
    if filter:
        p["filter"] = filter
    if usedonly:
        p["usedonly"] = ""
    return p


def _why(e: Exception | None) -> str:
    """A transport failure in a few words: "connection refused", "timed out", the OS's reason."""
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return f"{type(e).__name__}: {e}" if e is not None else "no answer"
