"""`Lineage.selection`: the selectors a fanned-out part or an only-changed run hands dbt select
exactly the nodes asked for, by dbt's own selection (`dbt ls` in-process, no warehouse), and
name a whole folder once instead of each of its nodes.

The project: three independent domains (bench/domains_project.py); a source declared in domain
1's folder, with a test there and another in tests/; a local package with a model in a folder of
the same name as domain 0's, which dbt's `path:` would select too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dbt.cli.main import dbtRunner

from flows.dbt.lineage import Lineage
from tests.conftest import REPO, load_module

domains_project = load_module(REPO / "bench" / "domains_project.py", "bench_domains_project")

_PACKAGE = {
    "dbt_project.yml": "name: pkg\nversion: '1.0.0'\nprofile: domains\n",
    "models/domain_0/pkg_model.sql": "select 1 as id\n",
}
_SOURCE = """\
version: 2
sources:
  - name: raw
    schema: raw
    tables:
      - name: things
        columns:
          - name: id
            data_tests: [not_null]
"""
_TEST_ON_THE_SOURCE = "select * from {{ source('raw', 'things') }} where id < 0\n"


def _dbt(project: Path, *args: str) -> Any:
    common = ["--project-dir", str(project), "--profiles-dir", str(project), "--quiet"]
    result = dbtRunner().invoke([*args, *common, "--target", "duckdb"])
    assert result.success, result.exception
    return result.result


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("selection")
    project = domains_project.generate(root / "domains", domains=3, models_per_domain=6)
    (project / "models" / "domain_1" / "_sources.yml").write_text(_SOURCE)
    (project / "tests").mkdir(exist_ok=True)
    (project / "tests" / "no_negative_things.sql").write_text(_TEST_ON_THE_SOURCE)
    for name, text in _PACKAGE.items():
        (root / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "pkg" / name).write_text(text)
    (project / "packages.yml").write_text("packages:\n  - local: ../pkg\n")
    _dbt(project, "deps")
    return project, _dbt(project, "parse", "--no-write-json")


def _selected(project: Path, selectors: tuple[str, ...], indirect: str = "empty") -> set[str]:
    """What dbt selects with these selectors (by default alone: no tests added by indirect
    selection), but sources, which a build selects and never runs."""
    listed = _dbt(
        project, "ls", "--select", *selectors, "--indirect-selection", indirect,
        "--output", "json", "--output-keys", "unique_id",
    )  # fmt: skip
    found = {json.loads(line)["unique_id"] for line in listed}
    return {uid for uid in found if not uid.startswith("source.")}


def _in(manifest: Any, folder: str) -> set[str]:
    return {
        uid
        for uid, node in manifest.nodes.items()
        if node.package_name == "domains" and node.original_file_path.startswith(folder + "/")
    }


def test_a_whole_folder_is_one_path_selector_and_selects_exactly_it(project):
    path, manifest = project
    domain_2 = _in(manifest, "models/domain_2")
    assert len(domain_2) == 12  # 6 models and their tests
    selection = Lineage(manifest).selection(domain_2)
    assert selection == ("path:models/domain_2",)
    assert _selected(path, selection) == domain_2


def test_a_folder_that_declares_a_source_is_one_selector_only_with_every_test_on_it(project):
    """`path:` selects the source too; in a build that runs nothing, but indirect selection
    takes the tests on the source with it, wherever they lie."""
    path, manifest = project
    lineage = Lineage(manifest)
    domain_1 = _in(manifest, "models/domain_1")  # its models, their tests, the source's test
    elsewhere = "test.domains.no_negative_things"
    assert len(domain_1) == 13 and elsewhere in manifest.nodes

    without = lineage.selection(domain_1)  # a test on the source is not asked for
    assert not any(s.startswith("path:") for s in without) and len(without) == 13
    assert _selected(path, without) == domain_1

    whole = lineage.selection(domain_1 | {elsewhere})
    assert whole == ("path:models/domain_1", "path:tests")  # the test is alone in its folder
    assert _selected(path, whole) == domain_1 | {elsewhere}
    fqns = tuple(lineage.fqn_selector(n) for n in sorted(domain_1 | {elsewhere}))
    for indirect in ("eager", "cautious"):  # what a build selects is the same either way
        assert _selected(path, whole, indirect) == _selected(path, fqns, indirect)


def test_a_domain_alone_in_its_folder_is_one_selector(project):
    path, manifest = project
    lineage = Lineage(manifest)
    domain_0 = _in(manifest, "models/domain_0")
    package_model = "model.pkg.pkg_model"

    # The package's model lies under a folder of the same name: `path:models/domain_0` would
    # select it too, so domain 0 alone is named node by node...
    alone = lineage.selection(domain_0)
    assert not any(s.startswith("path:") for s in alone) and len(alone) == 12
    assert _selected(path, alone) == domain_0
    # ...and with the package's model, as one folder.
    both = lineage.selection(domain_0 | {package_model})
    assert both == ("path:models/domain_0",)
    assert _selected(path, both) == domain_0 | {package_model}


def test_any_mix_of_folders_and_single_nodes_selects_exactly_what_was_asked(project):
    path, manifest = project
    lineage = Lineage(manifest)
    domain_0 = _in(manifest, "models/domain_0") | {"model.pkg.pkg_model"}
    domain_1 = _in(manifest, "models/domain_1")
    one_model = sorted(u for u in domain_1 if u.startswith("model."))[0]
    a_test = sorted(u for u in domain_0 if u.startswith("test."))[0]
    for wanted in (
        domain_0 | {one_model},  # a folder and a node of another
        domain_0 - {a_test},  # a folder but one test: node by node
        domain_0 | domain_1,  # all but a test on the source
        {one_model, a_test},
    ):
        selection = lineage.selection(wanted)
        assert _selected(path, selection) == wanted, selection
    assert lineage.selection(domain_0 | {one_model}) == (
        "path:models/domain_0",
        lineage.fqn_selector(one_model),
    )
