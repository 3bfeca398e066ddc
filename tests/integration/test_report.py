"""`ferry report` in a real browser: the page opens from a file, draws every plot, asks nothing
of the network and logs no error (Debian's chromium, driven by playwright)."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.artifacts import LocalStore, index_key
from flows.exit_codes import ExitCode
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

    page, requests, errors = offline_page(browser)
    page.goto(out.as_uri())
    for plot in PLOTS:
        page.wait_for_selector(f"#{plot}.js-plotly-plot .main-svg", timeout=10_000)
    assert page.locator("#plot-durations .scatterlayer .point").count() == 40
    assert page.locator("#plot-slowest .scatterlayer .trace").count() == 10
    assert page.locator("#plot-rows .scatterlayer .trace").count() == 10
    signals = page.locator("#signals tbody tr")
    assert signals.count() == 2
    assert "60.0 s, usually 17.0 s" in signals.nth(0).inner_text()
    assert "unusual volume" in signals.nth(1).inner_text()
    assert requests == [out.as_uri()], "the page asked for something besides itself"
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
