"""The report package on real fixture runs (tests/report/data, made by make_fixtures.py), a hand-written
fortio file and synthetic runs with known answers."""

from __future__ import annotations

import glob
import io
import json
import math
import os
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from synth import T0, make_run

from loadgen.recorder import Recorder, timeline_percentile
from loadgen.report import correlate
from loadgen.report.cli import report_main, write_single_run_report
from loadgen.report.frames import (
    combined_percentiles,
    export,
    frames_from_results,
    load_frames,
    parse_labels,
    read_table,
)
from loadgen.report.hist import SparseHist, merge_hists, percentiles
from loadgen.report.html import render_html
from loadgen.report.markdown import render_markdown
from loadgen.results import read_json


def _frames(data_dir: str, *names: str):  # type: ignore[no-untyped-def]
    return load_frames([os.path.join(data_dir, n) for n in names] if names else [data_dir])


# --- frames ----------------------------------------------------------------------------------


def test_runs_table_equals_the_json(data_dir: str) -> None:
    f = _frames(data_dir)
    for path in sorted(glob.glob(os.path.join(data_dir, "*.json"))):
        with open(path) as fh:
            d = json.load(fh)
        key = os.path.basename(path)[:-5]
        row = f.runs.set_index("run").loc[key]
        codes = {int(k): v for k, v in d["RetCodes"].items()}
        assert row["count"] == d["DurationHistogram"]["Count"]
        assert row["n503"] == codes.get(503, 0)
        assert row["ok"] == sum(v for k, v in codes.items() if 200 <= k < 300)
        assert row["actual_qps"] == pytest.approx(d["ActualQPS"])
        assert row["duration_s"] == pytest.approx(d["ActualDuration"] / 1e9)
        assert row["labels"] == d["Labels"]
        assert row["svc_max_ms"] == pytest.approx(d["DurationHistogram"]["Max"] * 1e3)
        got = f.codes[f.codes["run"] == key]
        assert dict(zip(got["code"], got["count"], strict=False)) == codes
        lg = d.get("Loadgen")
        if lg:
            assert row["start_unix"] == lg["StartUnix"]
            assert row["overloaded_503"] == int(lg["Overloaded"].get("503", 0))
            assert row["lat_max_ms"] == pytest.approx(lg["Latency"]["Max"] * 1e3)
            # the intended-start p99 the JSON's own summary reports (HDR percentile of the same recorder)
            p99 = [p["Value"] for p in lg["Latency"]["Percentiles"] if p["Percentile"] == 99]
            assert row["lat_p99_ms"] == pytest.approx(p99[0] * 1e3)
            tl = f.timeline[f.timeline["run"] == key].sort_values("t")
            assert list(tl["requests"]) == [s["Requests"] for s in lg["Timeline"]]
            assert list(tl["overloaded"]) == [s["Overloaded"] for s in lg["Timeline"]]
            assert list(tl["p99_ms"]) == pytest.approx([s["P99"] * 1e3 for s in lg["Timeline"]])
            assert list(tl["wall"]) == pytest.approx([lg["StartUnix"] + s["T"] for s in lg["Timeline"]])
            for s, code_200 in zip(lg["Timeline"], tl.get("code_200", [0] * len(tl)), strict=False):
                assert code_200 == s["Codes"].get("200", 0)
            if "Envoy" in lg:
                env = f.envoy[(f.envoy["run"] == key) & (f.envoy["scope"] == "cluster")]
                for cl, stats in lg["Envoy"]["Deltas"].items():
                    e = env[env["cluster"] == cl].set_index("stat")["delta"]
                    assert e["upstream_rq_pending_overflow"] == stats["upstream_rq_pending_overflow"]
                ser = f.envoy_series[f.envoy_series["run"] == key]
                assert sorted(ser["wall"].unique()) == sorted(e["Wall"] for e in lg["Envoy"]["Series"])


def test_labels_variant_concurrency_qps(data_dir: str) -> None:
    assert parse_labels("variant=cb-strict, C=3,qps=200, junk") == {
        "variant": "cb-strict",
        "c": "3",
        "qps": "200",
    }
    f = _frames(data_dir).runs.set_index("run")
    assert f.loc["cb-strict-c4", "variant"] == "cb-strict" and f.loc["cb-strict-c4", "concurrency"] == 4
    assert math.isnan(f.loc["cb-strict-c4", "qps"])  # -qps 0 = max
    assert f.loc["echo-c2-q100", "qps"] == 100
    assert "maxConnections: 1" in f.loc["cb-strict-c1", "policy"]


def test_numpy_percentiles_match_recorder() -> None:
    rng = np.random.default_rng(3)
    rec = Recorder()
    for v in rng.lognormal(13, 1.5, 3000).astype(np.int64):
        rec.record(int(v))
    ps = [0.001, 1, 10, 50, 90, 99, 99.9, 99.99, 100]
    got = percentiles(SparseHist.from_recorder(rec), ps)
    assert list(got) == [rec.percentile(p) for p in ps]


def test_combined_percentiles_equal_one_histogram_of_all_values(data_dir: str) -> None:
    f = _frames(data_dir)
    keys = ["cb-strict-c1", "cb-strict-c4", "cb-strict-timeline", "echo-c2-q100"]
    all_in_one = Recorder()
    for k in keys:
        all_in_one.merge(read_json(os.path.join(data_dir, k + ".json")).engine_result.latency)
    ps = (50.0, 90.0, 99.0, 99.9, 100.0)
    got = combined_percentiles(f, f.runs[f.runs["run"].isin(keys)], ps)
    for p in ps:
        assert got[p] == pytest.approx(all_in_one.percentile(p) / 1e6)
    # and that is not what averaging the runs' p99 gives
    avg = f.runs[f.runs["run"].isin(keys)]["lat_p99_ms"].mean()
    assert got[99.0] != pytest.approx(avg)


def test_merge_is_count_addition() -> None:
    a, b = Recorder(), Recorder()
    for v in (1_000_000, 2_000_000, 3_000_000):
        a.record(v)
    b.record(50_000_000)
    m = merge_hists([SparseHist.from_recorder(a), SparseHist.from_recorder(b)])
    assert m.total == 4 and m.vmin == 1_000_000 and m.vmax == 50_000_000


def test_timeline_percentiles_match_recorder_rule() -> None:
    r = make_run(labels="variant=x", seconds=3, rps=40)
    f = frames_from_results([(r, "x.json")])
    for s, p50 in zip(r.engine_result.timeline, f.timeline["p50_ms"], strict=False):
        assert p50 == pytest.approx(timeline_percentile(s.latency, 50) / 1000)


def test_fortio_file(data_dir: str) -> None:
    f = _frames(data_dir, "fortio-sample.json")
    row = f.runs.iloc[0]
    assert row["source"] == "fortio" and "fortio" in row["source_note"]
    assert row["variant"] == "fortio-ref" and row["concurrency"] == 2 and row["qps"] == 40
    assert row["count"] == 4 and row["n503"] == 1 and row["ok"] == 3
    assert row["svc_max_ms"] == pytest.approx(0.930407)
    assert 0.27 <= row["svc_p50_ms"] <= 0.94  # inside fortio's one bucket [Min, Max]
    assert math.isnan(row["lat_p50_ms"])
    assert f.timeline.empty and f.envoy.empty
    tp = correlate.trip_points(f.runs, "concurrency")
    assert tp.iloc[0]["basis"].startswith("503s (fortio")
    html = render_html(correlate.analyse(f))
    assert "fortio result" in html


# --- correlation ---------------------------------------------------------------------------


def test_reconciliation_statuses_through_correlate(data_dir: str) -> None:
    f = _frames(data_dir)
    v = correlate.verdicts(f).set_index("run")
    assert "echo-c2-q100" not in v.index  # no Envoy
    assert v.loc["cb-strict-c4", "status"] == "exact"
    assert v.loc["cb-strict-c4", "client_503_overloaded"] == v.loc["cb-strict-c4", "rejections"] > 0
    assert v.loc["unexplained", "status"] == "unexplained"
    assert "UNEXPLAINED" in v.loc["unexplained", "sentence"]
    # stored verdicts (made live by the observer) agree with the recomputed ones
    for run, stored in f.verdicts.items():
        assert stored["Status"] == v.loc[run, "status"], run
        assert stored["Sentence"] == v.loc[run, "sentence"], run


def test_within_tolerance_and_final_scrape_missing() -> None:
    r = make_run(labels="variant=t", seconds=3, p503=0.5, envoy_lag_s=0.0)
    assert r.envoy is not None
    # Envoy counted 2 more rejections than the client saw, and 2 requests were still in flight
    r.envoy["Deltas"]["svc"]["upstream_rq_pending_overflow"] += 2
    r.envoy["Deltas"]["svc"]["upstream_rq_503"] += 2
    r.engine_result.abandoned = 2
    v = correlate.verdicts(frames_from_results([(r, "t.json")])).iloc[0]
    assert v["status"] == "within_tolerance" and "in flight" in v["reason"]
    r.engine_result.abandoned = 0
    assert correlate.verdicts(frames_from_results([(r, "t.json")])).iloc[0]["status"] == "unexplained"
    # exact counts, but the final scrape failed: at best within tolerance
    r2 = make_run(labels="variant=t", seconds=3, p503=0.5, envoy_lag_s=0.0)
    assert r2.envoy is not None
    r2.envoy["Series"].append(
        {"T": 9.0, "Wall": T0 + 9, "Phase": "after", "Missing": True, "Error": "refused"}
    )
    v2 = correlate.verdicts(frames_from_results([(r2, "t.json")])).iloc[0]
    assert v2["status"] == "within_tolerance" and "final snapshot failed" in v2["reason"]


@pytest.mark.parametrize("lag", [0.0, 2.0, 3.0])
def test_alignment_and_lag(lag: float) -> None:
    r = make_run(labels="variant=lag", seconds=10, p503=0.6, shed_from=3, envoy_lag_s=lag, seed=7)
    f = frames_from_results([(r, "lag.json")])
    on = correlate.shedding_onset(f).iloc[0]
    assert on["client_onset_t"] == 3.0 and on["client_onset_wall"] == T0 + 3
    assert on["envoy_onset_t"] == pytest.approx(3.0 + lag)
    assert on["lag_s"] == pytest.approx(lag)
    al = correlate.aligned(f, "lag")
    first = al[al["envoy_overflow"] > 0]["t"].iloc[0]
    assert first == 3 + int(lag)
    assert al["envoy_overflow"].sum() == r.engine_result.overloaded[503]
    assert al["envoy_overflow_cum"].iloc[-1] == r.engine_result.overloaded[503]


def test_trip_points_on_synthetic_runs() -> None:
    runs = []
    # variant a: overflow from c=3 (0.5 %), above 1 % from c=5; variant b never sheds
    for c, p in ((1, 0.0), (2, 0.0), (3, 0.005), (5, 0.05), (10, 0.3)):
        runs.append((make_run(labels=f"variant=a,c={c}", seconds=2, rps=1000, p503=p, seed=c), f"a{c}.json"))
        runs.append(
            (make_run(labels=f"variant=b,c={c}", seconds=2, rps=1000, p503=0.0, seed=c), f"b{c}.json")
        )
    f = frames_from_results(runs)
    tp = correlate.trip_points(f.runs, "concurrency", rate=0.01).set_index("variant")
    assert tp.loc["a", "first_overflow"] == 3 and tp.loc["a", "rate_load"] == 5
    assert 0 < tp.loc["a", "first_overflow_rate"] < 0.01
    assert math.isnan(tp.loc["b", "first_overflow"]) and math.isnan(tp.loc["b", "rate_load"])
    assert (
        correlate.trip_points(f.runs, "concurrency", rate=0.2).set_index("variant").loc["a", "rate_load"]
        == 10
    )
    assert "first at c=3" in correlate.trip_sentence(tp.reset_index().iloc[0])
    # by qps: the qps label
    qr = [
        (make_run(labels=f"variant=q,qps={q}", seconds=1, rps=500, p503=p, seed=q), f"q{q}.json")
        for q, p in ((100, 0.0), (200, 0.02), (400, 0.1))
    ]
    tq = correlate.trip_points(frames_from_results(qr).runs, "qps")
    assert tq.iloc[0]["first_overflow"] == 200 and tq.iloc[0]["rate_load"] == 200
    with pytest.raises(Exception, match="by must be"):
        correlate.trip_points(f.runs, "threads")  # type: ignore[arg-type]


# --- HTML / Markdown -------------------------------------------------------------------------

EVIL = '<script>alert("x")</script>'


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _evil_runs() -> list[tuple[object, str]]:
    pol = f"spec:\n  host: {EVIL}\n"
    out = []
    for c, p in ((1, 0.0), (2, 0.1), (4, 0.4)):
        r = make_run(
            labels=f"variant={EVIL},c={c}",
            seconds=4,
            p503=p,
            envoy_lag_s=1.0,
            policy=pol,
            seed=c,
            url=f"http://127.0.0.1:9/{EVIL}?a=1&b=2",
        )
        assert r.envoy is not None
        r.envoy["Deltas"][EVIL] = r.envoy["Deltas"].pop("svc")  # a cluster name with markup
        out.append((r, f"evil-{c}.json"))
    out.append((make_run(labels="variant=plain,c=1", seconds=2), "plain.json"))
    return out


def test_html_is_self_contained_and_escaped() -> None:
    f = frames_from_results(_evil_runs())  # type: ignore[arg-type]
    page = render_html(correlate.analyse(f), title=EVIL)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    p = _Collect()
    p.feed(page)
    p.close()
    assert "script" not in p.tags and "iframe" not in p.tags and "link" not in p.tags and "img" not in p.tags
    for k, v in p.attrs:
        if k in ("src", "href", "xlink:href", "action", "srcset"):
            assert not re.match(r"\s*(https?:)?//", v), (k, v)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert not re.search(r"@import", page)
    # one SVG per chart: percentiles, rates, and one timeline per run lasting at least
    # MIN_TIMELINE_SECONDS (the three 4 s runs; the 2 s run gets none)
    n_charts = 1 + 1 + 3
    assert p.tags.count("svg") == n_charts == page.count("<svg")
    text = "".join(p.text)
    assert EVIL in text  # shown, as text
    assert "host: " + EVIL in text  # the policy YAML, escaped in a <pre>
    assert "pre" in p.tags
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "SVG ids collide between charts"


def test_html_from_fixtures_has_summary_first(data_dir: str) -> None:
    a = correlate.analyse(_frames(data_dir))
    page = render_html(a)
    assert page.index('id="summary"') < page.index('id="variants"') < page.index("<svg")
    assert ("cb-strict" in page and "overflow 503s first at c=2" in page) or "first at c=" in page
    assert "NOT explained" in page  # the unexplained run


def test_markdown_fits_a_pr_comment(data_dir: str) -> None:
    a = correlate.analyse(_frames(data_dir))
    text = render_markdown(a)
    assert "### Verdicts" in text and "cb-strict" in text and "<svg" not in text
    for vs in a.variants:
        assert vs.sentence.split(";")[0][:30].replace("_", "\\_") in text
    # big: 400 runs still fits, with a note
    runs = [
        (make_run(labels=f"variant=v{i % 7},c={i % 11}", seconds=1, rps=5, seed=i), f"r{i}.json")
        for i in range(400)
    ]
    big = render_markdown(correlate.analyse(frames_from_results(runs)))  # type: ignore[arg-type]
    assert len(big.encode()) < 65_000
    assert "more runs not shown" in big
    evil = render_markdown(correlate.analyse(frames_from_results(_evil_runs())))  # type: ignore[arg-type]
    assert "<script" not in evil and "&lt;script&gt;" in evil


# --- export ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trip(data_dir: str, tmp_path: object, fmt: str) -> None:
    f = _frames(data_dir)
    paths = export(f, str(tmp_path), fmt)
    assert len(paths) == 5
    for name in ("runs", "codes", "timeline", "envoy", "envoy_series"):
        back = read_table(os.path.join(str(tmp_path), f"{name}.{fmt}"))
        orig = f.table(name)
        assert list(back.columns) == list(orig.columns)
        assert len(back) == len(orig)
        num = orig.select_dtypes("number").columns
        pd.testing.assert_frame_equal(
            back[num].reset_index(drop=True), orig[num].reset_index(drop=True), check_dtype=False
        )
        for col in ("run", "variant", "stat"):
            if col in orig.columns:
                assert list(back[col].fillna("")) == list(orig[col].fillna(""))


# --- CLI -------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = report_main(argv, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_cli_writes_everything(data_dir: str, tmp_path: object) -> None:
    d = str(tmp_path)
    rc, out, err = _cli(
        [
            os.path.join(data_dir, "cb-*.json"),
            os.path.join(data_dir, "fortio-sample.json"),
            "-o",
            f"{d}/r.html",
            "-md",
            f"{d}/r.md",
            "-csv",
            f"{d}/csv",
            "-format",
            "parquet",
        ]
    )
    assert rc == 0, err
    assert os.path.getsize(f"{d}/r.html") > 1000 and os.path.exists(f"{d}/csv/runs.csv")
    assert os.path.exists(f"{d}/r-tables/runs.parquet")
    assert len(pd.read_csv(f"{d}/csv/runs.csv")) == 8
    assert "8 runs" in out


@pytest.mark.parametrize(
    "content, what",
    [
        ("{not json", "not JSON"),
        ('{"hello": 1}', "not a loadgen/fortio HTTP result"),
        ("[1, 2]", "not a loadgen/fortio HTTP result"),
        ('{"RunType": "GRPC Ping", "StartTime": "2022-03-19T15:34:23Z"}', "only HTTP"),
        ('{"RunType": "HTTP", "StartTime": "yesterday"}', "not a loadgen/fortio HTTP result"),
        ("\xff\xfe", "not JSON"),
    ],
)
def test_cli_bad_files_exit_2_with_one_line(data_dir: str, tmp_path: object, content: str, what: str) -> None:
    bad = os.path.join(str(tmp_path), "bad.json")
    with open(bad, "w", encoding="latin-1") as fh:
        fh.write(content)
    rc, _, err = _cli(
        [os.path.join(data_dir, "echo-c2-q100.json"), bad, "-o", os.path.join(str(tmp_path), "r.html")]
    )
    assert rc == 2
    assert err.count("\n") == 1 and bad in err and what in err, err
    assert not os.path.exists(os.path.join(str(tmp_path), "r.html"))


def test_cli_no_runs_and_usage(tmp_path: object) -> None:
    empty = str(tmp_path)
    for argv in (
        [empty, "-o", f"{empty}/r.html"],
        [f"{empty}/*.json", "-o", f"{empty}/r.html"],
        [f"{empty}/missing.json", "-o", "x.html"],
        ["-o", "x.html"],
        [empty],
        [empty, "-o", "x.html", "-format", "xml"],
        [empty, "-bogus"],
    ):
        rc, _, err = _cli(argv)
        assert rc == 2 and err.count("\n") == 1 and err.startswith("loadgen: "), (argv, err)


def test_write_single_run_report(data_dir: str, tmp_path: object) -> None:
    r = read_json(os.path.join(data_dir, "cb-strict-timeline.json"))
    path = os.path.join(str(tmp_path), "one.html")
    write_single_run_report(r, path)
    with open(path) as fh:
        page = fh.read()
    assert page.count("<svg") == 2 and "53 of 53 503s are circuit-breaker rejections" in page
    from loadgen.report import write_single_run_report as lazy

    lazy(r, os.path.join(str(tmp_path), "one.md"))
    with open(os.path.join(str(tmp_path), "one.md")) as fh:
        assert "exact" in fh.read()
