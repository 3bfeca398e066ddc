"""The baked parse state: which state a run starts from, and how ferry hears dbt's decision."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from flows.dbt.bake import PARSE_STATE_FILE, BakeSpec, seed
from flows.dbt.errors import InvalidDbtInput
from flows.dbt.invoke import _ParseStateCallback


def baked(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "baked"
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        (folder / PARSE_STATE_FILE).write_bytes(f"state of {name}".encode())
    return root


def test_a_fresh_target_path_starts_from_the_state_of_its_env_and_target(tmp_path):
    root = baked(tmp_path, "prod/redshift", "staging/redshift")
    target = tmp_path / "run" / "target"
    seeded = seed(root, "prod", "redshift", target)
    assert seeded.name == "prod/redshift"
    assert (target / PARSE_STATE_FILE).read_bytes() == b"state of prod/redshift"


def test_a_missing_state_is_named_with_those_that_exist(tmp_path):
    root = baked(tmp_path, "prod/redshift", "staging/redshift")
    seeded = seed(root, "prod", "duckdb", tmp_path / "target")
    assert seeded.name is None
    assert "no baked parse state for prod/duckdb" in seeded.note
    assert "prod/redshift, staging/redshift" in seeded.note
    assert not (tmp_path / "target").exists()


def test_a_target_path_with_its_own_state_keeps_it(tmp_path):
    root = baked(tmp_path, "local/duckdb")
    target = tmp_path / "target"
    target.mkdir()
    (target / PARSE_STATE_FILE).write_bytes(b"the last run's")
    assert seed(root, "local", "duckdb", target).name is None
    assert (target / PARSE_STATE_FILE).read_bytes() == b"the last run's"


def test_without_a_baked_dir_nothing_is_seeded(tmp_path):
    assert seed(None, "local", "duckdb", tmp_path).name is None


def test_bake_specs_come_as_one_object_or_a_list():
    one = BakeSpec.parse_many('{"target": "duckdb"}')
    assert one == [BakeSpec(env="local", target="duckdb")]
    many = BakeSpec.parse_many(
        '[{"env": "staging", "target": "redshift", "environment": {"FERRY_REDSHIFT_HOST": "h"}},'
        ' {"env": "prod", "target": "redshift"}]'
    )
    assert [(s.env, s.environment) for s in many] == [
        ("staging", {"FERRY_REDSHIFT_HOST": "h"}),
        ("prod", {}),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "not JSON"),
        ("[]", "nothing to bake"),
        ('{"env": "../etc"}', "must be lowercase letters"),
        ('{"env": "Prod"}', "must be lowercase letters"),  # as FERRY_ENV: no run could use it
        ('{"target": "duckdb", "password": "x"}', "password"),
        ('{"environment": {"A": 1}}', "environment.A"),
    ],
)
def test_a_bad_bake_spec_says_what_to_write(text, says):
    with pytest.raises(InvalidDbtInput, match="expected") as raised:
        BakeSpec.parse_many(text)
    assert says in str(raised.value)


def event(name: str, **data: object) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(name=name), data=SimpleNamespace(**data))


def test_dbt_accepting_its_saved_state_is_a_partial_parse():
    callback = _ParseStateCallback()
    callback(event("PartialParsingEnabled", deleted=0, added=1, changed=2))
    report = callback.report(1.23456)
    assert (report.partial, report.reason, report.changed_files, report.elapsed_s) == (
        True,
        None,
        3,
        1.235,
    )


def test_dbt_refusing_its_saved_state_is_a_full_parse_with_dbts_reason():
    callback = _ParseStateCallback()
    callback(event("UnableToPartialParse", reason="profile has changed"))
    report = callback.report(5.0)
    assert not report.partial and report.reason == "profile has changed"


def test_a_partial_parse_abandoned_midway_is_a_full_parse():
    callback = _ParseStateCallback()
    callback(event("PartialParsingEnabled", deleted=0, added=0, changed=1))
    callback(event("UnableToPartialParse", reason="change detected to override macro."))
    report = callback.report(5.0)
    assert not report.partial and "override macro" in (report.reason or "")


def test_partial_parsing_switched_off_is_named():
    callback = _ParseStateCallback()
    callback(event("PartialParsingNotEnabled"))
    assert "partial parsing is off" in (callback.report(1.0).reason or "")
