"""dbt's behavior flags name the module that declared them, as dbt does, without reading the
source of every frame on the stack (what made each dbt invocation pay for a deep stack)."""

from __future__ import annotations

import inspect

from dbt_common.behavior_flags import Behavior

from flows.dbt.invoke import dbt_runner


def _declared_here() -> Behavior:
    return Behavior([{"name": "some_flag", "default": False, "description": "off"}], {})


def test_a_flag_names_the_module_declaring_it_without_inspecting_the_stack(monkeypatch):
    assert dbt_runner().__name__ == "dbtRunner"

    def no_stack(*args: object, **kwargs: object) -> None:
        raise AssertionError("inspect.stack() was called")

    monkeypatch.setattr(inspect, "stack", no_stack)
    flag = _declared_here().some_flag
    assert flag._behavior_change_event.flag_source == __name__
    assert flag.no_warn is False


def test_a_flag_declared_with_its_source_keeps_it():
    dbt_runner()
    flags = Behavior(
        [{"name": "other_flag", "default": True, "source": "dbt-x", "description": "on"}], {}
    )
    assert flags.other_flag._behavior_change_event.flag_source == "dbt-x"
    assert flags.other_flag.setting is True
