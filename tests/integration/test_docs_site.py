"""The docs site: `docs generate` on the example project (DuckDB) publishes dbt's one
self-contained page to the store, says what it documented, and the page opens offline in a
real browser (Debian's chromium, driven by playwright) showing a model and its columns."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from flows.dbt.docs import Documented
from flows.run.owner import RunReport, run
from flows.run.request import RunRequest
from flows.run.summary import RunSummary, markdown_report
from flows.run.verdict import Outcome
from tests.conftest import SHOP, copy_project, load_generator, make_settings
from tests.integration.conftest import offline_page

pytestmark = pytest.mark.integration

DOCS = RunRequest.build(command="docs generate")


@dataclass(frozen=True)
class Built:
    """The example project built, then documented, into a folder store."""

    project: Path
    tmp: Path
    store: Path
    docs: RunReport

    @property
    def site(self) -> Path:
        return self.store / "shop" / "test" / "docs" / "index.html"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("docs")
    project = copy_project(SHOP, tmp / "shop")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FERRY_DUCKDB_PATH", str(tmp / "shop.duckdb"))
        generator = load_generator(project)
        assert (
            generator.main(["--target", "duckdb", "--duckdb-path", str(tmp / "shop.duckdb")]) == 0
        )
        settings = make_settings(project, tmp)
        build = run(RunRequest.build(command="build"), settings, run_id="run-build").summary
        assert build.outcome is Outcome.WARNINGS, build.verdict
        docs = run(DOCS, settings, run_id="run-docs")
        yield Built(project, tmp, tmp / "artifacts", docs)


def _expected(run_folder: Path) -> Documented:
    """What the run's own manifest.json and catalog.json say was documented."""
    manifest = json.loads((run_folder / "manifest.json").read_text())
    catalog = json.loads((run_folder / "catalog.json").read_text())
    kinds = Counter(n["resource_type"] for n in manifest["nodes"].values())
    kinds["source"] = len(manifest["sources"])
    wanted = ("model", "seed", "snapshot", "source")
    return Documented(
        nodes={k: kinds[k] for k in wanted if kinds[k]},
        relations=len(catalog["nodes"]) + len(catalog["sources"]),
    )


def test_docs_generate_publishes_the_page_and_says_what_it_documented(built: Built) -> None:
    summary = built.docs.summary
    run_folder = Path(str(summary.artifacts))
    expected = _expected(run_folder)
    assert expected.nodes["model"] >= 10 and expected.relations >= 20, expected
    assert summary.outcome is Outcome.SUCCESS
    assert summary.verdict == f"dbt docs generate {expected.describe()}"
    assert summary.documented == expected
    # The page, in the run's own folder and as the environment's site: the same bytes.
    page = (run_folder / "docs" / "index.html").read_bytes()
    assert built.site.read_bytes() == page
    assert b"dim_customers" in page and b"Primary key." in page
    assert summary.docs == str(built.site)
    stored = RunSummary.model_validate_json((run_folder / "summary.json").read_text())
    assert stored.documented == expected and stored.docs == str(built.site)
    assert f"- docs site: `{built.site}`" in markdown_report(summary, built.docs.nodes).splitlines()


def test_a_later_run_carries_no_stale_page_and_leaves_the_site(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_DUCKDB_PATH", str(built.tmp / "shop.duckdb"))
    settings = make_settings(built.project, built.tmp, work_dir=built.tmp / "later")
    later = run(RunRequest.build(command="compile", select="dim_customers"), settings).summary
    assert later.outcome is Outcome.SUCCESS, later.verdict
    assert not (Path(str(later.artifacts)) / "docs").exists()
    assert later.documented is None and later.docs == str(built.site)  # every run links it
    assert (
        built.site.read_bytes()
        == (Path(str(built.docs.summary.artifacts)) / "docs" / "index.html").read_bytes()
    )


def test_a_failed_docs_generate_leaves_the_published_site(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_DUCKDB_PATH", str(built.tmp / "shop.duckdb"))
    project = tmp_path / "shop"
    shutil.copytree(built.project, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "broken.sql").write_text(
        "{% if execute %}{{ exceptions.raise_compiler_error('broken on purpose') }}{% endif %}\n"
        "select 1 as id\n"
    )
    before = built.site.read_bytes()
    settings = make_settings(project, tmp_path, artifacts=str(built.store))
    failed = run(DOCS, settings).summary
    assert failed.outcome is Outcome.FAILED, failed.verdict
    assert failed.verdict.startswith("dbt docs generate failed"), failed.verdict
    assert built.site.read_bytes() == before


@mock_aws
def test_docs_generate_publishes_to_s3(shop_duckdb: Path, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ferry-artifacts")
    settings = make_settings(shop_duckdb, tmp_path, artifacts="s3://ferry-artifacts/dbt")
    report = run(DOCS, settings, run_id="run-docs")
    summary = report.summary
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    assert summary.verdict.startswith("dbt docs generate documented ")
    site = s3.get_object(Bucket="ferry-artifacts", Key="dbt/shop/test/docs/index.html")
    own = s3.get_object(
        Bucket="ferry-artifacts",
        Key=f"dbt/shop/test/runs/{summary.started_at:%Y-%m-%d}/run-docs/docs/index.html",
    )
    assert site["Body"].read() == own["Body"].read()
    assert summary.docs == "s3://ferry-artifacts/dbt/shop/test/docs/index.html"
    console = (
        "https://s3.console.aws.amazon.com/s3/object/ferry-artifacts"
        "?prefix=dbt/shop/test/docs/index.html"
    )
    assert f"- docs site: [{summary.docs}]({console})" in markdown_report(summary, report.nodes)


def test_the_published_page_opens_offline_and_shows_a_model_and_its_columns(
    built: Built, browser: Any
) -> None:
    page, requests, errors = offline_page(browser)
    url = built.site.as_uri()
    page.goto(f"{url}#!/model/model.shop.dim_customers")
    page.wait_for_selector("text=One row per customer with order history", timeout=20_000)
    columns = page.locator("table", has_text="customer_id")
    columns.first.wait_for(timeout=10_000)
    text = columns.first.inner_text()
    assert "customer_id" in text and "Primary key." in text
    assert "INTEGER" in text  # the column's type: the catalog, read from the warehouse, inlined
    assert "dim_customers" in page.locator("body").inner_text()
    # Nothing leaves the machine. Besides itself, the page asks only for dbt's favicon, by a
    # reference dbt's build left unexpanded (`${require(...)}`), beside it: not there, not needed.
    assert requests[0] == url
    assert [r for r in requests[1:] if "favicon" not in r] == [], requests
    assert all(r.startswith(built.site.parent.as_uri()) for r in requests), requests
    # dbt's page also names its icons by Angular templates (`{{ getIcon(...) }}`) that Chromium
    # refuses to load from a file:// page before Angular fills them in: its own quirks, drawn
    # anyway. Anything else (a script error, a refused request) is a failure.
    missing = [e for e in errors if e.endswith("net::ERR_FILE_NOT_FOUND")]
    assert len(missing) == len(requests) - 1  # the favicon's, each time it was asked for
    assert [e for e in errors if "getIcon(" not in e and e not in missing] == []
    (built.tmp / "docs.png").write_bytes(page.screenshot(full_page=True))
    page.close()
