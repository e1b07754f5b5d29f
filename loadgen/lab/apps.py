"""The lab's built-in upstream: a small app shaped like Istio's Bookinfo call chain.

Run as ``python -m loadgen.lab.apps --service NAME --version V --port P [--lab-url NAME=URL ...]
[--access-log FILE]``. It binds 127.0.0.1 only. ``--lab-url`` gives the lab's Envoy listener (the
caller's "sidecar") for each service it calls, so calls between services go through Envoy and are
subject to the lab's routes, faults and circuit breakers.

``productpage`` (any version)
    ``GET /productpage`` calls ``reviews`` ``/reviews/0`` through the lab, forwarding the
    ``end-user`` header, with a **3 s timeout and one retry** (Bookinfo's productpage: two tries,
    anything but a 200 counts as a failure). It always answers **200** with an HTML page; when
    both tries fail the page says ``Reviews unavailable`` (Bookinfo's "Sorry, product reviews are
    currently unavailable for this book."). ``x-lab-reviews`` tells which reviews version answered
    (or ``unavailable``) and ``x-lab-ratings`` passes on what reviews saw of ratings.
``reviews``
    ``GET /reviews/<id>`` answers JSON with a ``version`` field. ``v1`` does not call ratings;
    ``v2`` and ``v3`` call ``ratings`` ``/ratings/<id>`` through the lab with a **10 s timeout**
    (no retry), forwarding ``end-user``, and show ``black stars`` (v2) or ``red stars`` (v3), or
    ``Ratings service is currently unavailable`` when the call fails.
``ratings``
    ``GET /ratings/<id>`` answers JSON ratings with a ``version`` field.
any other service name
    answers every path with JSON ``{"service", "version", "path", "method"}``.

Every response carries ``x-lab-version: <service>-<version>``; ``GET /healthz`` answers ``ok``.
With ``--access-log`` each request appends one line: ``time method path status duration_s
end-user`` (UTC RFC 3339 time when the request arrived), flushed per line.

What it is not: not Bookinfo (no HTML templates, no login, no details service) and not a load
target for throughput (stdlib threads; use httpbin or ``loadgen serve`` for that).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

HOST = "127.0.0.1"
PRODUCTPAGE_TIMEOUT_S = 3.0
PRODUCTPAGE_TRIES = 2
REVIEWS_TIMEOUT_S = 10.0
FORWARD_HEADERS = ("end-user", "x-request-id", "user-agent")
UNAVAILABLE_PAGE = "Reviews unavailable: Sorry, product reviews are currently unavailable for this book."


class App:
    """What one process plays: service, version, where its callees are, where it logs."""

    def __init__(self, service: str, version: str, lab_urls: dict[str, str], access_log: IO[str] | None):
        self.service = service
        self.version = version
        self.lab_urls = lab_urls
        self.access_log = access_log
        self._log_lock = threading.Lock()

    @property
    def tag(self) -> str:
        return f"{self.service}-{self.version}"

    def log(self, method: str, path: str, status: int, started: float, t0: float, user: str) -> None:
        if self.access_log is None:
            return
        when = datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="microseconds")
        line = f"{when} {method} {path} {status} {time.monotonic() - t0:.6f} {user or '-'}\n"
        with self._log_lock:
            self.access_log.write(line)
            self.access_log.flush()

    def call(
        self, service: str, path: str, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes, str]:
        """GET ``path`` on ``service`` through the lab; (status, body, x-lab-version), status 0 on failure."""
        base = self.lab_urls.get(service)
        if base is None:
            return 0, f"no --lab-url for {service}".encode(), ""
        req = urllib.request.Request(base.rstrip("/") + path, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return int(r.status), r.read(), r.headers.get("x-lab-version", "")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read(), exc.headers.get("x-lab-version", "") if exc.headers else ""
        except (OSError, urllib.error.URLError) as exc:
            return 0, str(exc).encode(), ""

    # ---------------------------------------------- handlers: (status, body, content type, extra headers)

    def handle(self, path: str, method: str, fwd: dict[str, str]) -> tuple[int, bytes, str, dict[str, str]]:
        if path == "/healthz":
            return 200, b"ok\n", "text/plain", {}
        if self.service == "productpage" and path.split("?")[0] in ("/productpage", "/"):
            return self.productpage(fwd)
        m = re.fullmatch(r"/reviews/(\d+)", path.split("?")[0])
        if self.service == "reviews" and m:
            return self.reviews(int(m.group(1)), fwd)
        m = re.fullmatch(r"/ratings/(\d+)", path.split("?")[0])
        if self.service == "ratings" and m:
            return _json(
                200,
                {"id": int(m.group(1)), "version": self.version, "ratings": {"Reviewer1": 5, "Reviewer2": 4}},
            )
        if self.service in ("productpage", "reviews", "ratings"):
            return _json(404, {"error": "not found", "path": path, "version": self.version})
        return _json(200, {"service": self.service, "version": self.version, "path": path, "method": method})

    def productpage(self, fwd: dict[str, str]) -> tuple[int, bytes, str, dict[str, str]]:
        reviews: dict[str, Any] | None = None
        who = ""
        ratings = ""
        for _ in range(PRODUCTPAGE_TRIES):
            status, body, who = self.call("reviews", "/reviews/0", fwd, PRODUCTPAGE_TIMEOUT_S)
            if status == 200:
                try:
                    reviews = json.loads(body)
                except ValueError:
                    reviews = None
                if reviews is not None:
                    break
        if reviews is None:
            section = f"<p>{UNAVAILABLE_PAGE}</p>"
            who = "unavailable"
        else:
            ratings = str(reviews.get("ratings_version", ""))
            items = "".join(
                f"<li>{r['reviewer']}: {r['text']} {r.get('stars', '')}</li>"
                for r in reviews.get("reviews", [])
            )
            section = f"<p>Reviews served by: {who}</p><ul>{items}</ul>"
        user = fwd.get("end-user", "")
        page = (
            f"<html><head><title>Simple Bookstore App</title></head><body>"
            f"<h1>The Comedy of Errors</h1><p>user: {user or 'anonymous'}</p>{section}</body></html>\n"
        )
        extra = {"x-lab-reviews": who, "x-lab-ratings": ratings}
        return 200, page.encode(), "text/html; charset=utf-8", extra

    def reviews(self, pid: int, fwd: dict[str, str]) -> tuple[int, bytes, str, dict[str, str]]:
        doc: dict[str, Any] = {
            "id": pid,
            "version": self.version,
            "reviews": [
                {"reviewer": "Reviewer1", "text": "An extremely entertaining play by Shakespeare."},
                {"reviewer": "Reviewer2", "text": "Absolutely fun and entertaining."},
            ],
        }
        headers: dict[str, str] = {}
        if self.version in ("v2", "v3"):
            color = "black" if self.version == "v2" else "red"
            status, body, who = self.call("ratings", f"/ratings/{pid}", fwd, REVIEWS_TIMEOUT_S)
            ratings: dict[str, Any] | None = None
            if status == 200:
                try:
                    ratings = json.loads(body).get("ratings")
                except (ValueError, AttributeError):
                    ratings = None
            if ratings is None:
                for r in doc["reviews"]:
                    r["stars"] = "Ratings service is currently unavailable"
                who = "unavailable"
            else:
                for r in doc["reviews"]:
                    r["stars"] = f"{ratings.get(r['reviewer'], 0)} {color} stars"
            doc["ratings_version"] = who
            headers["x-lab-ratings"] = who
        return *_json(200, doc)[:3], headers


def _json(status: int, doc: dict[str, Any]) -> tuple[int, bytes, str, dict[str, str]]:
    return status, (json.dumps(doc) + "\n").encode(), "application/json", {}


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "loadgen-lab-app"
        # headers and body go out in two writes: without this, Nagle + the peer's delayed ACK
        # add ~40 ms to every keep-alive response
        disable_nagle_algorithm = True

        def _serve(self, send_body: bool) -> None:
            started, t0 = time.time(), time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            fwd = {h: v for h in FORWARD_HEADERS if (v := self.headers.get(h))}
            status, body, ctype, extra = app.handle(self.path, self.command, fwd)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-lab-version", app.tag)
            for k, v in extra.items():
                if v:
                    self.send_header(k, v)
            self.end_headers()
            if send_body:
                self.wfile.write(body)
            app.log(self.command, self.path, status, started, t0, fwd.get("end-user", ""))

        def do_GET(self) -> None:
            self._serve(True)

        def do_POST(self) -> None:
            self._serve(True)

        def do_PUT(self) -> None:
            self._serve(True)

        def do_DELETE(self) -> None:
            self._serve(True)

        def do_HEAD(self) -> None:
            self._serve(False)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def parse_lab_urls(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        name, sep, url = it.partition("=")
        if not sep or not name or not url.startswith("http://"):
            raise SystemExit(f"apps: --lab-url wants NAME=http://HOST:PORT, got {it!r}")
        out[name] = url
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadgen.lab.apps", description=__doc__.split("\n")[0])
    p.add_argument("--service", required=True)
    p.add_argument("--version", default="v1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lab-url", action="append", default=[], metavar="NAME=URL")
    p.add_argument("--access-log", metavar="FILE")
    ns = p.parse_args(argv)
    log = open(ns.access_log, "a") if ns.access_log else None  # noqa: SIM115 - open for the life of the server
    app = App(ns.service, ns.version, parse_lab_urls(ns.lab_url), log)
    server = _Server((HOST, ns.port), make_handler(app))
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    raise SystemExit(main())
