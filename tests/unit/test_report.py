"""`ferry report`: the page drawn from history records, the command that writes it, and how a
run publishes it (the page, and plotly.js beside it once per version)."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from flows.artifacts import LocalStore, index_key, open_store
from flows.cli import main as ferry
from flows.exit_codes import ExitCode
from flows.history.query import refresh_tables
from flows.history.store import report_key
from flows.report.page import page
from flows.report.render import report
from flows.report.site import publish
from flows.run.history import record_of
from flows.run.summary import RunSummary
from tests.stored_runs import stored_run

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
PLOTS = ("plot-durations", "plot-slowest", "plot-failure-rate", "plot-rows")
# The installed plotly's plotly.js, as plotly itself names its version.
PLOTLY_JS = f"assets/plotly-{get_plotlyjs_version()}.min.js"


def summary(n, *, project="shop", deployment="dbt/build-prod", outcome="success", **fields):
    """Run number `n`, started n hours after T0."""
    started = T0 + timedelta(hours=n)
    given = {
        "run_id": f"run-{n:03d}",
        "project": project,
        "deployment": deployment,
        "outcome": outcome,
        "verdict": f"{outcome} verdict of run {n}",
        "finished_at": (started + timedelta(seconds=60 + n)).isoformat(),
        "duration_s": 60.0 + n,
        "nodes_total": 2,
    }
    return stored_run(started_at=started, **(given | fields))


def results(*, seconds=1.0, rows=500, test_status="pass", model="model.shop.orders"):
    adapter = {} if rows is None else {"rows_affected": rows}
    return [
        {
            "unique_id": model,
            "status": "success",
            "execution_time": seconds,
            "adapter_response": adapter,
        },
        {"unique_id": "test.shop.t", "status": test_status, "execution_time": 0.1},
    ]


def write(folder: Path, body: RunSummary, nodes: list[dict]) -> None:
    """One record as flows.history.fetch.sync writes it, folded into the tables the report
    reads (as `ferry report` does after the sync)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = record_of(body, nodes)
    (folder / f"{record['project']}__{record['run_id']}.json").write_text(json.dumps(record))
    refresh_tables(folder)


def page_of(folder: Path, **kwargs) -> str:
    args = {"env": "prod", "project": None, "store_url": "s3://arts/dbt", "now": NOW} | kwargs
    return report(folder, **args).html


def figures_of(page: str) -> dict[str, dict]:
    """The data the page's script draws, by the id of the figure's element."""
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    assert found, "the page carries no figure data"
    return {f["id"]: f for f in json.loads(found[1])["figures"]}


def fetched(page: str) -> list[str]:
    """Every address the page's elements load (scripts, styles, images, frames)."""
    return re.findall(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=\"([^\"]*)\"", page)


@pytest.fixture
def ten(tmp_path) -> Path:
    """Ten runs: the test warns in run 4 and fails in run 7 (that run failed)."""
    folder = tmp_path / "records"
    for n in range(1, 11):
        status = "fail" if n == 7 else "warn" if n == 4 else "pass"
        write(
            folder,
            summary(n, outcome="failed" if n == 7 else "success"),
            results(seconds=float(n), rows=500 + n, test_status=status),
        )
    return folder


def test_every_plot_and_the_header_are_on_one_page_that_loads_only_plotly_js_beside_it(ten):
    page = page_of(ten)
    figures = figures_of(page)
    for plot in PLOTS:
        assert f'<div id="{plot}" class="figure"></div>' in page
        assert plot in figures  # its data, which the page's script draws with Plotly.newPlot
    assert "Plotly.newPlot(figure.id" in page  # the page's own script, inlined
    # plotly.js (4.8 MB) is not in the page: the page loads it from beside itself, nothing else
    assert fetched(page) == [PLOTLY_JS]
    assert "plotly.js v" not in page and len(page.encode()) < 60_000
    own = page
    followed = re.sub(r'<a href="[^"]*">', "", own)  # links a reader follows: never fetched
    assert "http" not in followed.replace("http://www.w3.org", "")
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", own))
    assert facts["environment"] == "prod" and facts["project"] == "every project"
    assert facts["store"] == "s3://arts/dbt" and facts["generated"] == "2026-12-03 12:00 UTC"
    assert facts["runs"] == "10 (2026-11-01 07:00 to 2026-11-01 16:00 UTC)"
    assert facts["latest run"] == (
        "success: success verdict of run 10 (dbt/build-prod: build, 2026-11-01 16:00 UTC)"
    )


def test_the_figures_carry_aggregates_of_the_runs(ten):
    figures = figures_of(page_of(ten))
    assert figures["plot-durations"]["requests"] == ["dbt/build-prod: build"]
    durations = {s["name"]: s for s in figures["plot-durations"]["series"]}
    assert list(durations) == ["success", "failed"]  # in the order of the outcomes' colours
    assert durations["failed"]["y"] == [67.0] and durations["failed"]["colour"] == "#c62828"
    assert durations["failed"]["x"] == ["2026-11-01 13:00:00"]
    assert (durations["failed"]["request"], durations["failed"]["run"]) == ([0], ["run-007"])
    assert len(durations["success"]["y"]) == 9 and durations["success"]["request"] == [0] * 9
    [slowest] = figures["plot-slowest"]["series"]
    assert slowest["name"] == "model.shop.orders (p95 9.5 s)"  # 1..10 s: p95 9.55
    assert slowest["y"] == [float(n) for n in range(1, 11)]  # each run its own point
    failures = figures["plot-failure-rate"]
    assert failures["days"] == ["2026-11-01"]  # the one day of the failure-rate plot
    assert (failures["runs"], failures["runs_failed"]) == ([10], [1])  # one run failed that day
    assert failures["failed_pct"] == [5.0] and failures["warned_pct"] == [5.0]  # 1 of 20 nodes
    [rows] = figures["plot-rows"]["series"]
    assert rows["name"] == "model.shop.orders" and rows["y"] == [500.0 + n for n in range(1, 11)]


def test_each_run_of_the_durations_plot_names_its_own_request(ten):
    write(ten, summary(11, deployment="dbt/run-prod", request={"command": "run"}), results())
    figures = figures_of(page_of(ten))
    durations = figures["plot-durations"]
    [success] = [s for s in durations["series"] if s["name"] == "success"]
    pairs = zip(success["run"], success["request"], strict=True)
    named = {run: durations["requests"][i] for run, i in pairs}
    assert named["run-011"] == "dbt/run-prod: run"
    assert named["run-010"] == "dbt/build-prod: build"


def test_every_string_of_the_data_is_escaped(tmp_path):
    evil = '<img src=x onerror="alert(1)">'
    folder = tmp_path / "records"
    body = summary(
        1,
        deployment=evil,
        verdict=evil,
        regressions=[{"unique_id": evil, "s": 30.0, "usual_s": 10.0, "runs": 5}],
    )
    write(folder, body, results(model=f"model.shop.{evil}"))
    page = page_of(folder, env="<b>prod</b>", store_url=f"s3://arts/{evil}")
    assert evil not in page and "<b>prod</b>" not in page
    own = page
    assert "&lt;b&gt;prod&lt;/b&gt;" in own
    assert own.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 4  # header, table
    # the figures' labels too: plotly.js renders some HTML in them, and decodes &lt; and &gt;
    # (not &quot;: a quote stays as it is, shown as written)
    escaped = '&lt;img src=x onerror="alert(1)"&gt;'
    figures = figures_of(page)
    assert figures["plot-rows"]["series"][0]["name"] == f"model.shop.{escaped}"
    assert figures["plot-slowest"]["series"][0]["name"] == f"model.shop.{escaped} (p95 1.0 s)"
    assert figures["plot-durations"]["requests"] == [f"{escaped}: build"]


def test_no_string_of_the_data_can_end_the_script_element_that_carries_it():
    """The JSON sits in a <script> element: a `</script` in it would end the element early and
    the rest would be read as HTML. Every `<` of it is written as an escape."""
    raw = "</script><script>alert(1)</script><!--"
    figures = [{"id": "plot-rows", "kind": "rows", "series": [{"name": raw, "x": [], "y": []}]}]
    written = page("prod", {}, ["<section></section>"], figures=figures)
    assert written.count("</script>") == 4  # the PlotlyConfig, plotly.js, the data, the script
    assert figures_of(written)["plot-rows"]["series"][0]["name"] == raw


def test_zero_runs_render_a_message(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    made = report(folder, env="prod", project=None, store_url="s3://arts/dbt", now=NOW)
    assert made.runs == 0
    assert 'id="no-runs"' in made.html and "No runs yet" in made.html
    assert "<script" not in made.html and "<dd>0</dd>" in made.html  # nothing to draw: no script


def test_the_signals_table_shows_the_latest_run_of_each_deployment(tmp_path):
    folder = tmp_path / "records"
    old = [{"unique_id": "model.shop.gone", "s": 50.0, "usual_s": 5.0, "runs": 20}]
    write(folder, summary(1, regressions=old), results())
    slower = [{"unique_id": "model.shop.orders", "s": 31.5, "usual_s": 10.2, "runs": 20}]
    write(folder, summary(2, regressions=slower), results())
    nothing = {
        "unique_id": "model.shop.payments",
        "kind": "nothing_new",
        "rows": 0,
        "usual_rows": 1200.0,
        "deviation": 8.0,
        "runs": 20,
    }
    write(folder, summary(3, deployment="dbt/run-prod", anomalies=[nothing]), results())
    table = re.search(r'<table id="signals">.*?</table>', page_of(folder), re.S)
    assert table
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr.*?</tr>", table[0])]
    assert cells[1:] == [
        [
            "dbt/build-prod",
            "build",
            "2026-11-01 08:00",
            "slower",
            "model.shop.orders",
            "31.5 s, usually 10.2 s (the median of 20 runs)",
        ],
        [
            "dbt/run-prod",
            "build",
            "2026-11-01 09:00",
            "nothing new",
            "model.shop.payments",
            "0 rows, usually 1,200 (the median of 20 runs): did its sources deliver nothing new?",
        ],
    ]


def test_no_signal_says_none(ten):
    table = re.search(r'<table id="signals">.*?</table>', page_of(ten), re.S)
    assert table and 'class="none">none:' in table[0]


def test_an_adapter_without_row_counts_gets_a_note_not_a_plot(tmp_path):
    folder = tmp_path / "records"
    for n in (1, 2):
        write(folder, summary(n), results(rows=None))
    page = page_of(folder)
    assert 'id="plot-rows"' not in page and 'id="rows-none"' in page
    assert "DuckDB's does not" in html.unescape(page)
    assert all(f'id="{plot}"' in page for plot in PLOTS[:3])


def test_the_header_links_to_each_projects_docs_site(ten, tmp_path):
    docs = re.findall(r"<dt>docs</dt><dd>(.*?)</dd>", page_of(ten))
    assert docs == [
        '<a href="https://s3.console.aws.amazon.com/s3/object/arts?prefix=dbt/shop/prod/docs/'
        'index.html">s3://arts/dbt/shop/prod/docs/index.html</a>'
    ]
    write(ten, summary(11, project="other"), results(model="model.other.big"))
    folder = tmp_path / "store"
    local = re.findall(r"<dt>docs</dt><dd>(.*?)</dd>", page_of(ten, store_url=str(folder)))
    assert local == [
        f'<a href="{(folder / "other/prod/docs/index.html").as_uri()}">other: {folder}/other/'
        f'prod/docs/index.html</a>, <a href="{(folder / "shop/prod/docs/index.html").as_uri()}">'
        f"shop: {folder}/shop/prod/docs/index.html</a>"
    ]


def test_project_and_since_narrow_the_runs(ten):
    write(ten, summary(11, project="other"), results(model="model.other.big"))
    assert report(ten, env="prod", project=None, store_url="x").runs == 11
    only = report(ten, env="prod", project="shop", store_url="x", since=T0 + timedelta(hours=8))
    assert only.runs == 3 and "model.other.big" not in only.html
    assert report(ten, env="prod", project="nope", store_url="x").runs == 0


def store_run(store: LocalStore, n: int) -> None:
    """Run `n` in the store's layout (summary.json, run_results.json, the index entry)."""
    body = summary(n)
    prefix = f"shop/prod/runs/2026-11-01/{body.run_id}"
    store.put_bytes(f"{prefix}/summary.json", body.model_dump_json().encode())
    run_results = {"results": results(seconds=float(n))}
    store.put_bytes(f"{prefix}/run_results.json", json.dumps(run_results).encode())
    pointer = {"run_id": body.run_id, "prefix": prefix}
    store.put_bytes(index_key("shop", "prod", body.run_id), json.dumps(pointer).encode())


def test_the_command_writes_the_page_and_says_where(tmp_path, capsys):
    store = LocalStore(tmp_path / "store")
    for n in (1, 2, 3):
        store_run(store, n)
    out = tmp_path / "site" / "index.html"
    argv = ["report", "--artifacts", str(store.root), "--env", "prod"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert ferry(argv) == ExitCode.OK
    assert capsys.readouterr().out == f"ferry: report of 3 run(s) written to {out}\n"
    assert 'id="plot-durations"' in out.read_text()
    # the page, and plotly.js beside it where the page loads it from; no temporary left
    assert sorted(p.name for p in out.parent.iterdir()) == ["assets", "index.html"]
    asset = out.parent / PLOTLY_JS
    assert [p.name for p in asset.parent.iterdir()] == [asset.name]
    assert asset.read_text(encoding="utf-8") == get_plotlyjs()
    before = asset.stat()
    assert ferry([*argv, "--since", "2026-11-01T08:30"]) == ExitCode.OK
    assert "report of 1 run(s)" in capsys.readouterr().out
    after = asset.stat()  # plotly.js was there: left as it was, not written again
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


class CountingStore:
    """A store that records every write: (key, bytes)."""

    def __init__(self, store):
        self.inner, self.writes = store, []
        self.url = store.url

    def put_bytes(self, key, data):
        self.writes.append((key, len(data)))
        self.inner.put_bytes(key, data)

    def put_file(self, key, path):
        self.writes.append((key, path.stat().st_size))
        self.inner.put_file(key, path)

    def list_keys(self, prefix):
        return self.inner.list_keys(prefix)


def publishes(store, html: str) -> list[list[tuple[str, int]]]:
    """What three runs of the environment wrote, each in order."""
    counting = CountingStore(store)
    writes = []
    for _ in range(3):
        publish(counting, report_key("shop", "prod"), html)
        writes.append(counting.writes)
        counting.writes = []
    return writes


def test_a_run_publishes_plotly_js_once_per_version_then_the_page_alone(ten, tmp_path):
    html = page_of(ten)
    store = LocalStore(tmp_path / "store")
    # a page of an older plotly.js: its file is no use to this one
    store.put_bytes("shop/prod/report/assets/plotly-0.0.1.min.js", b"old")
    asset = f"shop/prod/report/{PLOTLY_JS}"
    size = len(get_plotlyjs().encode())
    first, second, third = publishes(store, html)
    assert first == [(asset, size), ("shop/prod/report/index.html", len(html.encode()))]
    assert second == third == [("shop/prod/report/index.html", len(html.encode()))]
    assert store.get_bytes(asset) == get_plotlyjs().encode()


@mock_aws
def test_on_s3_too_a_run_uploads_plotly_js_only_when_the_store_lacks_it(ten):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="arts")
    html = page_of(ten)
    first, second, _ = publishes(open_store("s3://arts/dbt"), html)
    assert [key for key, _ in first] == [
        f"shop/prod/report/{PLOTLY_JS}",
        "shop/prod/report/index.html",
    ]
    assert second == [("shop/prod/report/index.html", len(html.encode()))]
    keys = boto3.client("s3").list_objects_v2(Bucket="arts", Prefix="dbt/shop/prod/report/")
    assert sorted(o["Key"] for o in keys["Contents"]) == [
        f"dbt/shop/prod/report/{PLOTLY_JS}",
        "dbt/shop/prod/report/index.html",
    ]


def test_an_empty_store_writes_a_page_of_no_runs(tmp_path, capsys):
    out = tmp_path / "index.html"
    argv = ["report", "--artifacts", str(tmp_path / "store"), "--cache-dir", str(tmp_path)]
    assert ferry([*argv, "--out", str(out)]) == ExitCode.OK
    assert capsys.readouterr().out == f"ferry: report of 0 run(s) written to {out}\n"
    assert "No runs yet" in out.read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--since", "7x"], "--since '7x' is neither a duration"),
        (["--artifacts", "ftp://host/x"], "ftp:// is not supported"),
        (["--env", "a/b"], "FERRY_ENV"),
        (["--out", "."], "is a folder: pass the page's file name"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, message):
    argv = ["report", "--artifacts", str(tmp_path / "store"), "--cache-dir", str(tmp_path)]
    assert ferry([*argv, "--out", str(tmp_path / "r.html"), *flags]) == ExitCode.INVALID
    err = capsys.readouterr().err
    assert err.startswith("ferry report: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "store").exists() and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("blocked", ["cache", "out"])
def test_an_unreadable_store_or_unwritable_page_fails_with_one_line(tmp_path, capsys, blocked):
    store = LocalStore(tmp_path / "store")
    store_run(store, 1)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = blocker if blocked == "cache" else tmp_path / "cache"
    out = blocker / "index.html" if blocked == "out" else tmp_path / "index.html"
    argv = ["report", "--artifacts", str(store.root), "--env", "prod"]
    assert ferry([*argv, "--cache-dir", str(cache), "--out", str(out)]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith("ferry report: ") and err.count("\n") == 1
