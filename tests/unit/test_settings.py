"""FERRY_* settings: refused with the variable's name and what to set instead."""

import pytest

from flows.settings import FerrySettings, InvalidSettings


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FERRY_ENV", "Prod", "FERRY_ENV='Prod' must be lowercase letters"),
        ("FERRY_STATE_ENV", "../prod", "FERRY_STATE_ENV='../prod' must be lowercase letters"),
        ("FERRY_TARGET_SCHEMA", "CI PR", "FERRY_TARGET_SCHEMA='CI PR' must be a plain"),
        ("FERRY_FLOW_TIMEOUT_S", "-1", "FERRY_FLOW_TIMEOUT_S='-1': Input should be greater"),
    ],
)
def test_a_bad_variable_is_named_with_its_value(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as refused:
        FerrySettings.from_env()
    assert str(refused.value).startswith(message)
    assert "errors.pydantic.dev" not in str(refused.value)


def test_every_bad_variable_is_named_at_once(monkeypatch):
    monkeypatch.setenv("FERRY_ENV", "Prod")
    monkeypatch.setenv("FERRY_TRANSIENT_RETRIES", "many")
    with pytest.raises(InvalidSettings, match=r"FERRY_ENV='Prod'.*; FERRY_TRANSIENT_RETRIES="):
        FerrySettings.from_env()


def test_scratch_folders_must_be_folders(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "a-file" / "runs"))
    with pytest.raises(InvalidSettings, match=r"FERRY_WORK_DIR=.* but .*a-file is a file"):
        FerrySettings.from_env()
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "not-yet"))
    assert FerrySettings.from_env().run.work_dir == tmp_path / "not-yet"


def test_flat_flags_reach_their_concern_and_aliases_keep_the_variable(monkeypatch):
    monkeypatch.setenv("FERRY_HISTORY_DAYS", "7")
    monkeypatch.setenv("FERRY_PREFECT_API_WAIT_S", "5")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/shop")
    settings = FerrySettings.from_env(env="ci-pr-1", artifacts="s3://b/dbt", history=False)
    assert (settings.run.env, settings.store.artifacts) == ("ci-pr-1", "s3://b/dbt")
    assert (settings.history.enabled, settings.history.days) == (False, 7)
    assert settings.prefect.api_wait_s == 5
    assert settings.github.repository == "acme/shop"
    assert FerrySettings.from_env(history_days=3).history.days == 3  # a flag wins
    with pytest.raises(InvalidSettings, match=r"^FERRY_HISTORY_DAYS=0: Input should be"):
        FerrySettings.from_env(history_days=0)
    with pytest.raises(TypeError, match="not ferry settings: days"):
        FerrySettings.from_env(days=3)


def test_every_setting_has_a_description_and_its_own_variable():
    settings = FerrySettings.every_setting()
    assert all(setting.description for setting in settings)
    variables = [setting.variable for setting in settings]
    assert len(set(variables)) == len(variables)
    names = [setting.name for setting in settings]
    assert len(set(names)) == len(names)
    assert FerrySettings.setting("prefect_api_wait_s").variable == "FERRY_PREFECT_API_WAIT_S"


def test_the_three_families_of_ferry_names_never_overlap():
    """Run settings, profile variables and alert-channel secrets share the FERRY_ prefix: a
    profile variable named like a setting would silently change the run's settings."""
    import re
    from pathlib import Path

    from flows.notify import automations
    from flows.settings import FerrySettings

    repo = Path(__file__).resolve().parents[2]
    settings = {name for s in FerrySettings.every_setting() for name in s.variables}
    assert {"FERRY_ENV", "FERRY_HISTORY_DAYS", "FERRY_GITHUB_TOKEN"} <= settings
    profile = set(
        re.findall(r"env_var\('(FERRY_\w+)'", (repo / "dbt_project/profiles.yml").read_text())
    )
    spec = automations.load(repo / "automations.yaml")
    channels = {name for channel in spec.channels for name in channel.secret_env_names()}
    assert profile and channels  # each family was found where it lives
    assert not settings & profile, settings & profile
    assert not settings & channels, settings & channels
    assert not profile & channels, profile & channels
