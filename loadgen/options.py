"""Every option of ``loadgen load``: its flag, default and one-line meaning, in one place.

The CLI help is generated from :data:`LOAD_FLAGS`; :class:`LoadOptions` is the frozen value the
runner receives. Flags are spelled as fortio spells them (single dash); ``--long`` forms are
accepted too. This module parses nothing and validates nothing: see :mod:`loadgen.cli.load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 75.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True)
class LoadOptions:
    url: str
    connections: int = 4
    qps: float = 8.0
    duration_s: float = 5.0
    exactly: int = 0
    resolution: float = 0.001
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    headers: tuple[tuple[str, str], ...] = ()
    method: str = ""
    payload: bytes = b""
    content_type: str = ""
    timeout_s: float = 3.0
    keepalive: bool = True
    http10: bool = False
    uniform: bool = False
    jitter: bool = False
    nocatchup: bool = False
    allow_initial_errors: bool = False
    abort_on: int = 0
    labels: str = ""
    json_path: str = ""
    auto_save: bool = False
    data_dir: str = "."
    loglevel: str = "Info"
    quiet: bool = False
    access_log_file: str = ""
    engine: str = ""
    threads: int = 0
    hdr_out: str = ""
    stdclient: bool = False
    h2: bool = False
    insecure: bool = False
    runid: int = 0
    envoy_admin: str = ""
    envoy_cluster: str = ""
    stats_interval_s: float = 1.0
    report_path: str = ""
    # --- k8s hook (loadgen.k8s): -kubeconfig, -context, -via, -keep ---
    kubeconfig: str = ""
    context: str = ""
    via: str = ""
    keep: bool = False
    # --- end k8s hook ---
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its names, the LoadOptions field, the kind of value, its help."""

    name: str  # as fortio spells it, without the dash
    dest: str
    kind: str  # int, float, duration, bool, str, repeat, percentiles, payload-file, qps
    default: str
    help: str


LOAD_FLAGS: tuple[Flag, ...] = (
    Flag("c", "connections", "int", "4", "Number of connections/simultaneous requests"),
    Flag(
        "qps", "qps", "float", "8", "Total queries per second across connections; 0 or negative = max speed"
    ),
    Flag("t", "duration_s", "duration", "5s", "How long to run (e.g. 10s, 1m); 0 = until interrupted"),
    Flag("n", "exactly", "int", "0", "Run exactly this many calls instead of a duration (no warm-up)"),
    Flag("r", "resolution", "float", "0.001", "Resolution of the fortio-style histogram, in seconds"),
    Flag("p", "percentiles", "percentiles", "50,75,90,99,99.9", "Percentiles to report, comma separated"),
    Flag(
        "H", "headers", "repeat", "", "Extra header 'name: value' (repeatable); 'Host:' sets the virtual host"
    ),
    Flag("X", "method", "str", "", "HTTP method (default GET, or POST with a payload)"),
    Flag("payload", "payload", "str", "", "Request body (implies POST)"),
    Flag("payload-file", "payload", "payload-file", "", "Request body read from a file (implies POST)"),
    Flag(
        "payload-size",
        "payload",
        "payload-size",
        "0",
        "Random request body of this many bytes (implies POST)",
    ),
    Flag("content-type", "content_type", "str", "", "Content-Type of the body (implies POST)"),
    Flag("timeout", "timeout_s", "duration", "3s", "Connect and per-request read timeout"),
    Flag("keepalive", "keepalive", "bool", "true", "Keep connections alive (false sends Connection: close)"),
    Flag("http1.0", "http10", "bool", "false", "Send HTTP/1.0 requests"),
    Flag(
        "uniform",
        "uniform",
        "bool",
        "false",
        "Stagger the connections' start uniformly over one period (qps mode)",
    ),
    Flag("jitter", "jitter", "bool", "false", "Add +/-10% random jitter to each wait (qps mode)"),
    Flag(
        "nocatchup", "nocatchup", "bool", "false", "Skip late slots instead of catching up (qps is a ceiling)"
    ),
    Flag(
        "allow-initial-errors",
        "allow_initial_errors",
        "bool",
        "false",
        "Do not abort when warm-up calls fail",
    ),
    Flag(
        "abort-on",
        "abort_on",
        "int",
        "0",
        "Stop the run at the first call with this status (-1: socket errors)",
    ),
    Flag("labels", "labels", "str", "", "Label for the run (default: URL and hostname)"),
    Flag("json", "json_path", "str", "", "Write the JSON result to this file ('-' = stdout)"),
    Flag("a", "auto_save", "bool", "false", "Save the JSON result as <data-dir>/<ID>.json"),
    Flag("data-dir", "data_dir", "str", ".", "Directory for -a"),
    Flag("loglevel", "loglevel", "str", "Info", "Debug|Verbose|Info|Warning|Error|Critical|Fatal"),
    Flag("quiet", "quiet", "bool", "false", "Only the essential report lines; no progress line"),
    Flag("access-log-file", "access_log_file", "str", "", "Write one JSON line per call to this file"),
    Flag("engine", "engine", "str", "", "Engine: c (default for http), py, httpx (env LOADGEN_ENGINE)"),
    Flag("threads", "threads", "int", "0", "Engine threads (default: one per CPU, at most -c)"),
    Flag("hdr-out", "hdr_out", "str", "", "Write the latency HdrHistogram log to this file"),
    Flag("stdclient", "stdclient", "bool", "false", "Use the httpx engine"),
    Flag("h2", "h2", "bool", "false", "HTTP/2 (implies the httpx engine)"),
    Flag("k", "insecure", "bool", "false", "Do not verify TLS certificates"),
    Flag("runid", "runid", "int", "0", "Run ID added to the JSON and the auto-save file name"),
    Flag(
        "envoy-admin",
        "envoy_admin",
        "str",
        "",
        "Envoy admin URL: snapshot its stats around the run and reconcile",
    ),
    Flag("envoy-cluster", "envoy_cluster", "str", "", "Regex of the Envoy clusters to report (default: all)"),
    Flag(
        "stats-interval", "stats_interval_s", "duration", "1s", "Envoy stats snapshot interval during the run"
    ),
    Flag("report", "report_path", "str", "", "Also write a self-contained HTML (or .md) report of this run"),
    # --- k8s hook (loadgen.k8s) ---
    Flag("kubeconfig", "kubeconfig", "str", "", "Kubeconfig for k8s://, exec://, job:// (default: usual)"),
    Flag("context", "context", "str", "", "Kubeconfig context to use (default: the current one)"),
    Flag(
        "via",
        "via",
        "str",
        "",
        "Run the load elsewhere: exec://NS/(pod|deploy)/NAME[?container=C] or job://NS?replicas=N&image=I",
    ),
    Flag("keep", "keep", "bool", "false", "With -via job://: keep the Job after the run"),
    # --- end k8s hook ---
)
