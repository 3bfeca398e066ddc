"""bench/domains_project.py: the same arguments give the same files, no ref leaves its domain,
and bad arguments are refused before anything is written. No dbt runs here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO, load_module

domains_project = load_module(REPO / "bench" / "domains_project.py", "bench_domains_project")

_REF = re.compile(r"\{\{ ref\('(\w+)'\) \}\}")


def _files(project: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(project)): path.read_bytes()
        for path in sorted(project.rglob("*"))
        if path.is_file()
    }


def _models(project: Path) -> dict[str, Path]:
    return {path.stem: path for path in (project / "models").rglob("*.sql")}


def test_the_same_arguments_give_byte_identical_files(tmp_path: Path):
    args = {"domains": 3, "models_per_domain": 25, "sleep_ms": 150, "seed": 7}
    first = domains_project.generate(tmp_path / "a", **args)
    second = domains_project.generate(tmp_path / "b", **args)
    other_seed = domains_project.generate(tmp_path / "c", **{**args, "seed": 8})

    assert _files(first) == _files(second)
    assert _files(first) != _files(other_seed)


def test_a_domain_is_laid_out_the_same_whatever_the_number_of_domains(tmp_path: Path):
    two = domains_project.generate(tmp_path / "two", domains=2, models_per_domain=20)
    five = domains_project.generate(tmp_path / "five", domains=5, models_per_domain=20)

    domain_1 = Path("models") / "domain_1"
    assert _files(two / domain_1) == _files(five / domain_1)


def test_every_ref_stays_in_its_domain_and_points_back(tmp_path: Path):
    project = domains_project.generate(tmp_path / "p", domains=4, models_per_domain=40)
    models = _models(project)

    assert len(models) == 160
    roots = {domain: 0 for domain in range(4)}
    fan_ins = 0
    for name, path in models.items():
        domain = int(path.parent.name.removeprefix("domain_"))
        assert name.startswith(f"d{domain}_m")
        refs = _REF.findall(path.read_text(encoding="utf-8"))
        if not refs:
            roots[domain] += 1
        fan_ins += len(refs) > 1
        for ref in refs:
            assert models[ref].parent == path.parent, f"{name} refs {ref} of another domain"
            assert ref < name, f"{name} refs {ref}, which is not earlier: the DAG could loop"
    assert all(count > 1 for count in roots.values()), roots
    assert fan_ins > 0


def test_each_domain_is_tagged_selectable_and_tested(tmp_path: Path):
    project = domains_project.generate(tmp_path / "p", domains=3, models_per_domain=12)
    dbt_project = (project / "dbt_project.yml").read_text(encoding="utf-8")
    selectors = (project / "selectors.yml").read_text(encoding="utf-8")
    profiles = (project / "profiles.yml").read_text(encoding="utf-8")

    for domain in range(3):
        # Once under models, once under data_tests.
        assert dbt_project.count(f'domain_{domain}:\n      +tags: ["domain_{domain}"]') == 2
        assert f"  - name: domain_{domain}\n" in selectors
        schema = project / "models" / f"domain_{domain}" / f"_domain_{domain}__models.yml"
        assert schema.read_text(encoding="utf-8").count("- not_null") == 12
    assert "+materialized: table" in dbt_project
    assert "target: postgres" in profiles
    assert "env_var('DOMAINS_PG_SCHEMA', 'domains')" in profiles
    assert "env_var('DOMAINS_DUCKDB_PATH', 'domains.duckdb')" in profiles


def test_the_sleep_is_postgres_only_and_absent_when_zero(tmp_path: Path):
    slow = domains_project.generate(tmp_path / "slow", domains=2, models_per_domain=5, sleep_ms=250)
    fast = domains_project.generate(tmp_path / "fast", domains=2, models_per_domain=5)

    for path in _models(slow).values():
        sql = path.read_text(encoding="utf-8")
        assert "{% if target.type == 'postgres' -%}" in sql
        assert sql.count("pg_sleep(0.250)") == 1
        assert "cross join warehouse_sleep{% endif %}" in sql
    for path in _models(fast).values():
        sql = path.read_text(encoding="utf-8")
        assert "sleep" not in sql
        assert "{%" not in sql


def test_the_cli_splits_the_models_evenly(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "p"

    rc = domains_project.main(["--domains", "3", "--models", "30", "--out", str(out)])

    assert rc == 0
    assert len(_models(out)) == 30
    assert {path.parent.name for path in _models(out).values()} == {
        "domain_0",
        "domain_1",
        "domain_2",
    }
    assert "wrote 30 models in 3 domains" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("domains", "models"), [(4, 30), (0, 10), (4, 0)], ids=["uneven", "no-domain", "no-model"]
)
def test_the_cli_refuses_models_it_cannot_split(tmp_path: Path, domains: int, models: int):
    with pytest.raises(SystemExit):
        domains_project.main(
            ["--domains", str(domains), "--models", str(models), "--out", str(tmp_path / "p")]
        )
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "args",
    [{"domains": 0}, {"models_per_domain": 0}, {"sleep_ms": -1}],
    ids=["domains", "models_per_domain", "sleep_ms"],
)
def test_bad_numbers_are_refused(tmp_path: Path, args: dict[str, int]):
    with pytest.raises(ValueError, match=next(iter(args))):
        domains_project.generate(tmp_path / "p", **args)
    assert not (tmp_path / "p").exists()


def test_a_non_empty_out_dir_is_refused(tmp_path: Path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "keep.txt").write_text("mine", encoding="utf-8")

    with pytest.raises(FileExistsError):
        domains_project.generate(tmp_path / "p")
    assert _files(tmp_path / "p") == {"keep.txt": b"mine"}


def test_an_empty_out_dir_is_used(tmp_path: Path):
    (tmp_path / "p").mkdir()

    domains_project.generate(tmp_path / "p", domains=1, models_per_domain=1)

    assert set(_models(tmp_path / "p")) == {"d0_m000"}
