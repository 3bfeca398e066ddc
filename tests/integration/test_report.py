"""`ferry report` in a real browser: the page opens from a file, and from a copy of its folder,
draws every plot with plotly.js from beside it, asks nothing of the network and logs no error
(Debian's chromium, driven by playwright)."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from flows.artifacts import LocalStore, index_key, open_store
from flows.cli import main as ferry
from flows.exit_codes import ExitCode
from flows.history.store import report_key
from flows.report.site import plotly_js_path, publish
from tests.integration.conftest import offline_page
from tests.stored_runs import stored_run

pytestmark = pytest.mark.integration

FERRY = str(Path(sys.executable).with_name("ferry"))
PLOTS = ("plot-durations", "plot-slowest", "plot-failure-rate", "plot-rows")
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
MODELS = [f"model.shop.m{i:02d}" for i in range(15)]
TESTS = [f"test.shop.t{i:02d}" for i in range(15)]
# The distinct colours of an image, counted by the browser's own PNG decoder.
_COLOURS_JS = """async (png) => {
    const img = new Image();
    img.src = "data:image/png;base64," + png;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const data = context.getImageData(0, 0, img.width, img.height).data;
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4) {
        seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    return seen.size;
}"""


def write_store(store: LocalStore, runs: int = 40) -> None:
    """`runs` runs three hours apart, as ferry and dbt write them: every third fails a test;
    the newest found a regression and an anomaly."""
    for n in range(runs):
        run_id = f"run-{n:03d}"
        started = T0 + timedelta(hours=3 * n)
        failing = n % 3 == 0
        results: list[dict[str, Any]] = [
            {
                "unique_id": uid,
                "status": "success",
                "execution_time": 1.0 + i + (n % 5),
                "adapter_response": {"_message": "INSERT", "rows_affected": 100 * (i + 1) + n},
            }
            for i, uid in enumerate(MODELS)
        ]
        results += [
            {
                "unique_id": uid,
                "status": "fail" if failing and i == 0 else "warn" if i == 1 else "pass",
                "execution_time": 0.2,
                "adapter_response": {},
            }
            for i, uid in enumerate(TESTS)
        ]
        newest = n == runs - 1
        summary = stored_run(
            run_id=run_id,
            deployment="dbt/build-prod",
            outcome="failed" if failing else "warnings",
            verdict=f"run {n}: {'1 test failed' if failing else '1 warning'}",
            started_at=started,
            finished_at=(started + timedelta(minutes=10)).isoformat(),
            duration_s=600.0 + 10 * (n % 7),
            git_sha="abc1234def",
            nodes_total=len(results),
            failed=[{"unique_id": TESTS[0]}] if failing else [],
            regressions=[{"unique_id": MODELS[-1], "s": 60.0, "usual_s": 17.0, "runs": 20}]
            if newest
            else [],
            anomalies=[
                {
                    "unique_id": MODELS[0],
                    "kind": "unusual",
                    "rows": 90_000,
                    "usual_rows": 120.0,
                    "deviation": 42.0,
                    "runs": 20,
                }
            ]
            if newest
            else [],
        )
        prefix = f"shop/prod/runs/{started:%Y-%m-%d}/{run_id}"
        store.put_bytes(f"{prefix}/summary.json", summary.model_dump_json().encode())
        store.put_bytes(f"{prefix}/run_results.json", json.dumps({"results": results}).encode())
        pointer = {"run_id": run_id, "prefix": prefix}
        store.put_bytes(index_key("shop", "prod", run_id), json.dumps(pointer).encode())


def drawn(browser: Any, page_file: Path) -> tuple[Any, list[str], list[str]]:
    """`page_file` opened offline, once every plot is drawn: (the page, what it asked for, its
    errors)."""
    page, requests, errors = offline_page(browser)
    page.goto(page_file.as_uri())
    for plot in PLOTS:
        page.wait_for_selector(f"#{plot}.js-plotly-plot .main-svg", timeout=10_000)
    return page, requests, errors


def test_the_report_opens_offline_and_draws_every_plot(browser, tmp_path):
    store = LocalStore(tmp_path / "store")
    write_store(store)
    out = tmp_path / "site" / "index.html"
    done = subprocess.run(
        [
            FERRY,
            "report",
            "--env",
            "prod",
            "--artifacts",
            str(store.root),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout == f"ferry: report of 40 run(s) written to {out}\n"

    # the folder as a reader downloads it: the page loads plotly.js from beside itself
    copy = Path(shutil.copytree(out.parent, tmp_path / "downloads" / "report")) / "index.html"
    shutil.rmtree(out.parent)
    page, requests, errors = drawn(browser, copy)
    assert page.locator("#plot-durations .scatterlayer .point").count() == 40
    assert page.locator("#plot-slowest .scatterlayer .trace").count() == 10
    assert page.locator("#plot-rows .scatterlayer .trace").count() == 10
    legend = {p: page.locator(f"#{p} .legendtext").all_text_contents() for p in PLOTS}
    assert legend["plot-durations"] == ["warnings", "failed"]
    assert legend["plot-slowest"][0] == "model.shop.m14 (p95 19.0 s)"
    assert legend["plot-failure-rate"] == ["runs failed", "nodes failed", "nodes warned"]
    assert legend["plot-rows"][0] == "model.shop.m14"
    # a run's point says which run it was when the pointer is on it
    point = page.locator("#plot-durations .scatterlayer .point").last.bounding_box()
    assert point
    page.mouse.move(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)
    page.wait_for_selector("#plot-durations .hoverlayer .hovertext")
    hover = page.locator("#plot-durations .hoverlayer").text_content() or ""
    assert "dbt/build-prod: build" in hover and "640.0 s" in hover and "run run-039" in hover
    signals = page.locator("#signals tbody tr")
    assert signals.count() == 2
    assert "60.0 s, usually 17.0 s" in signals.nth(0).inner_text()
    assert "unusual volume" in signals.nth(1).inner_text()
    asked = [copy.as_uri(), (copy.parent / plotly_js_path()).as_uri()]
    assert requests == asked, "the page asked for something besides itself and plotly.js"
    assert errors == []

    shot = page.screenshot(full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", shot[16:24])
    assert width == 1280 and height > 900  # the whole page, longer than the window
    (tmp_path / "report.png").write_bytes(shot)
    plot = page.locator("#plot-durations").screenshot()
    counter = browser.new_page()
    colours = counter.evaluate(_COLOURS_JS, base64.b64encode(plot).decode())
    counter.close()
    assert colours > 20, "the durations plot is one flat colour"


def test_a_page_without_its_assets_folder_says_what_it_misses(browser, tmp_path):
    store = LocalStore(tmp_path / "store")
    write_store(store, runs=5)
    out = tmp_path / "site" / "index.html"
    argv = ["report", "--env", "prod", "--artifacts", str(store.root)]
    assert ferry([*argv, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    alone = tmp_path / "mail" / "index.html"  # the page sent on its own
    alone.parent.mkdir()
    shutil.copyfile(out, alone)
    page, _, errors = offline_page(browser)
    page.goto(alone.as_uri())
    notes = page.locator(".figure p.missing-plotly")
    notes.first.wait_for(timeout=10_000)
    assert notes.count() == len(PLOTS)
    assert plotly_js_path() in notes.first.inner_text()
    assert page.locator(".js-plotly-plot").count() == 0
    assert [e for e in errors if "ERR_FILE_NOT_FOUND" not in e] == []  # plotly.js alone failed


@mock_aws
def test_the_report_a_run_publishes_to_s3_opens_from_a_download_of_its_folder(browser, tmp_path):
    """What flows.run.history.record does after each run (flows.report.site.publish), twice,
    then `aws s3 cp --recursive` of the report's folder: the copy draws every plot."""
    local = LocalStore(tmp_path / "store")
    write_store(local, runs=12)
    out = tmp_path / "site" / "index.html"
    argv = ["report", "--env", "prod", "--artifacts", str(local.root)]
    assert ferry([*argv, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="arts")
    store = open_store("s3://arts/dbt")
    html = out.read_text(encoding="utf-8")
    first = publish(store, report_key("shop", "prod"), html)
    again = publish(store, report_key("shop", "prod"), html)
    assert first.asset_bytes > 4_000_000 and again.asset_bytes == 0
    folder = "dbt/shop/prod/report/"
    download = tmp_path / "download"
    for obj in s3.list_objects_v2(Bucket="arts", Prefix=folder)["Contents"]:
        dest = download / obj["Key"].removeprefix(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("arts", obj["Key"], str(dest))
    page, requests, errors = drawn(browser, download / "index.html")
    assert page.locator("#plot-durations .scatterlayer .point").count() == 12
    assert requests == [(download / p).as_uri() for p in ("index.html", plotly_js_path())]
    assert errors == []


def test_strings_of_the_data_are_shown_as_text_never_run_as_html(browser, tmp_path):
    evil = '<img src=x onerror="document.title=1">'
    store = LocalStore(tmp_path / "store")
    for n in range(3):
        started = T0 + timedelta(hours=n)
        run_id = f"run-{n}"
        summary = stored_run(run_id=run_id, deployment=evil, started_at=started)
        prefix = f"shop/prod/runs/{started:%Y-%m-%d}/{run_id}"
        results = [
            {
                "unique_id": uid,
                "status": "success",
                "execution_time": 1.0 + n,
                "adapter_response": {"rows_affected": rows + n},
            }
            for uid, rows in ((f"model.shop.{evil}", 10), ("model.shop.plain", 1))
        ]
        store.put_bytes(f"{prefix}/summary.json", summary.model_dump_json().encode())
        store.put_bytes(f"{prefix}/run_results.json", json.dumps({"results": results}).encode())
        pointer = json.dumps({"run_id": run_id, "prefix": prefix}).encode()
        store.put_bytes(index_key("shop", "prod", run_id), pointer)
    out = tmp_path / "site" / "index.html"
    argv = ["report", "--env", "prod", "--artifacts", str(store.root)]
    assert ferry([*argv, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    page, _, errors = drawn(browser, out)
    rows = page.locator("#plot-rows .legendtext").all_text_contents()
    assert rows == [f"model.shop.{evil}", "model.shop.plain"]
    point = page.locator("#plot-durations .scatterlayer .point").last.bounding_box()
    assert point
    page.mouse.move(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)
    page.wait_for_selector("#plot-durations .hoverlayer .hovertext")
    assert f"{evil}: build" in (page.locator("#plot-durations .hoverlayer").text_content() or "")
    assert page.locator("img").count() == 0 and page.title() == "ferry report: prod"
    assert errors == []
