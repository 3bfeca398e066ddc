"""Everything judged before dbt starts: command, flags, vars, selection words."""

import pytest

from flows.dbt.commands import DbtCommand
from flows.run.request import (
    InvalidRunRequest,
    PublishMode,
    RunRequest,
    parse_command,
    parse_vars,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("build", DbtCommand.BUILD),
        ("source freshness", DbtCommand.SOURCE_FRESHNESS),
        ("source-freshness", DbtCommand.SOURCE_FRESHNESS),
        ("freshness", DbtCommand.SOURCE_FRESHNESS),
        ("Docs  Generate", DbtCommand.DOCS_GENERATE),
        ("retry", DbtCommand.RETRY),
    ],
)
def test_commands_are_accepted_in_the_forms_users_type(given, expected):
    assert parse_command(given) is expected


def test_an_unknown_command_is_refused_with_the_list_of_commands():
    with pytest.raises(
        InvalidRunRequest, match=r"unknown dbt command 'deploy'.*'source freshness'"
    ):
        parse_command("deploy")


def test_vars_parse_from_json_yaml_or_a_mapping():
    assert parse_vars('{"day": "2024-01-01", "n": 3}') == {"day": "2024-01-01", "n": 3}
    assert parse_vars({"a": [1, 2]}) == {"a": [1, 2]}
    assert parse_vars(None) == {} and parse_vars("") == {}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[1, 2]", "must be a mapping"),
        ('{"a": ', "not valid JSON or YAML"),
        ("just a string", "must be a mapping"),
        ("{1: 2}", "keys must be non-empty strings"),
    ],
)
def test_malformed_vars_are_refused_with_an_example(document, message):
    with pytest.raises(InvalidRunRequest, match=message):
        parse_vars(document)


def test_vars_that_json_cannot_carry_are_refused():
    with pytest.raises(InvalidRunRequest, match="JSON-serialisable"):
        parse_vars("day: 2024-01-02")  # YAML turns this into a date, which --vars cannot carry


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": "test", "full_refresh": True}, "full_refresh applies to build, run and seed"),
        ({"selector": "daily", "select": "a"}, "cannot be combined"),
        ({"command": "retry", "select": "a"}, "takes no select"),
        ({"threads": 0}, "threads must be between 1 and 64"),
        ({"select": "--full-refresh"}, "looks like a flag"),
        ({"command": "build", "retry_of": "abc"}, "only meaningful with command 'retry'"),
        ({"command": "retry", "retry_of": "../../x"}, "'../../x' is not a run id"),
        ({"threads": "4"}, "threads must be a whole number, got '4'"),
        ({"threads": True}, "threads must be a whole number"),
    ],
)
def test_requests_that_cannot_run_are_refused(kwargs, message):
    with pytest.raises(InvalidRunRequest, match=message):
        RunRequest.build(**kwargs)


def test_selection_strings_split_like_the_dbt_cli():
    req = RunRequest.build(select="tag:daily  fct_orders+", exclude=["a b", "c"])
    assert req.select == ("tag:daily", "fct_orders+")
    assert req.exclude == ("a", "b", "c")
    assert req.selection_args() == [
        "--select",
        "tag:daily",
        "fct_orders+",
        "--exclude",
        "a",
        "b",
        "c",
    ]
    assert req.describe() == "build --select tag:daily fct_orders+ --exclude a b c"


def test_each_command_names_the_resource_types_it_executes():
    assert DbtCommand.SEED.resource_types == ("seed",)
    assert "unit_test" in DbtCommand.TEST.resource_types
    assert DbtCommand.SOURCE_FRESHNESS.argv == ["source", "freshness"]
    assert DbtCommand.BUILD.materializes and not DbtCommand.TEST.materializes


def test_the_prefect_ui_form_is_derived_from_the_request():
    from prefect.utilities.callables import parameter_schema

    from flows.dbt_flow import dbt_flow

    schema = parameter_schema(dbt_flow.fn).model_dump_for_openapi()
    properties = schema["properties"]
    assert list(properties) == list(RunRequest.model_fields)
    # the command is a dropdown of exactly the commands ferry understands
    command = schema["definitions"]["DbtCommand"]
    assert command["enum"] == [c.value for c in DbtCommand]
    # text parameters are plain text boxes (no None toggle), empty meaning "not given"
    for name in ("select", "exclude", "selector", "target", "retry_of"):
        assert properties[name]["type"] == "string" and properties[name]["default"] == ""
        assert "anyOf" not in properties[name]
    # every parameter carries its field's description
    for name, field in RunRequest.model_fields.items():
        assert properties[name]["description"] == field.description


def test_empty_text_means_not_given():
    request = RunRequest.build(select="", exclude="", selector="", target=" ", retry_of="")
    assert request == RunRequest.build()


def test_flags_marked_for_dbt_reach_its_command_line():
    request = RunRequest.build(command="run", threads=4, full_refresh=True, fail_fast=True)
    assert request.dbt_flags() == ["--full-refresh", "--threads", "4", "--fail-fast"]
    assert RunRequest.build().dbt_flags() == []


def test_an_unknown_parameter_is_refused():
    with pytest.raises(InvalidRunRequest, match="unknown parameter"):
        RunRequest.build(indirect_selections="eager")


@pytest.mark.parametrize(
    ("select", "compares"),
    [
        ("state:modified+", True),
        ("+state:modified.body", True),
        ("1+state:new", True),
        ("tag:daily fct_orders+", False),
        ("state_dim", False),
    ],
)
def test_state_selections_need_the_production_manifest(select, compares):
    request = RunRequest.build(select=select)
    assert request.compares_state is compares
    assert request.needs_state is compares
    assert RunRequest.build(select="tag:daily", defer=True).needs_state


def test_defer_is_named_and_cannot_apply_to_a_retry():
    assert RunRequest.build(select="state:modified+", defer=True).describe() == (
        "build --select state:modified+ --defer"
    )
    with pytest.raises(InvalidRunRequest, match="cannot defer"):
        RunRequest.build(command="retry", defer=True)


def test_dbt_gets_the_state_and_defer_flags_only_when_asked(tmp_path):
    from flows.dbt.invoke import DbtInvocation
    from flows.dbt.profiles import DbtProject

    project = DbtProject(tmp_path, tmp_path, "p", "p", ("dev",), "dev")

    def args(request: RunRequest, state: bool) -> list[str]:
        return DbtInvocation(
            project,
            request.dbt_args(),
            tmp_path,
            tmp_path / "t",
            tmp_path,
            tmp_path / "s" if state else None,
        ).run_args()

    slim = args(RunRequest.build(select="state:modified+", defer=True), state=True)
    assert slim[slim.index("--state") + 1] == str(tmp_path / "s") and "--defer" in slim
    compare_only = args(RunRequest.build(select="state:modified+"), state=True)
    assert "--state" in compare_only and "--defer" not in compare_only
    plain = args(RunRequest.build(select="tag:daily"), state=False)
    assert "--state" not in plain and "--defer" not in plain


def test_dbt_takes_the_requests_dbt_arguments_as_plain_values():
    from flows.dbt.args import DbtArgs

    request = RunRequest.build(
        command="run",
        select="tag:daily",
        exclude="stg_x",
        indirect_selection="cautious",
        threads=4,
        full_refresh=True,
        target="dev",
        vars={"days": 7},
        defer=True,
        only_changed=False,
    )
    assert request.dbt_args() == DbtArgs(
        command=DbtCommand.RUN,
        select=("tag:daily",),
        exclude=("stg_x",),
        selection_flags=("--indirect-selection", "cautious"),
        flags=("--full-refresh", "--threads", "4"),
        target="dev",
        vars={"days": 7},
        defer=True,
    )
    assert request.selection_args() == request.dbt_args().selection_args()


@pytest.mark.parametrize("command", ["build", "run", "seed", "snapshot"])
def test_what_builds_relations_can_publish_blue_green(command):
    request = RunRequest.build(command=command, publish="blue-green")
    assert request.publish is PublishMode.BLUE_GREEN
    assert RunRequest.build(command=command).publish is PublishMode.DIRECT


@pytest.mark.parametrize("command", ["test", "source freshness", "docs generate", "compile"])
def test_blue_green_is_refused_for_what_builds_nothing(command):
    with pytest.raises(InvalidRunRequest, match=f"snapshot\\), not to '{command}'$"):
        RunRequest.build(command=command, publish="blue-green")
    assert RunRequest.build(command=command, publish="direct").publish is PublishMode.DIRECT


def test_a_retry_is_never_blue_green():
    with pytest.raises(InvalidRunRequest, match="a blue-green run is not retried: run it again"):
        RunRequest.build(command="retry", publish="blue-green")


def test_blue_green_is_named_and_direct_goes_without_saying():
    request = RunRequest.build(select="tag:daily", publish="blue-green")
    assert request.describe() == "build --select tag:daily --publish blue-green"
    assert RunRequest.build(select="tag:daily", publish="direct").describe() == (
        "build --select tag:daily"
    )


def test_ferry_run_takes_publish_as_a_choice_of_its_modes(capsys):
    import argparse

    from flows.cli import _parser

    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    (publish,) = [a for a in commands.choices["run"]._actions if a.dest == "publish"]
    assert publish.option_strings == ["--publish"]
    assert publish.choices == ["direct", "blue-green"]
    assert _parser().parse_args(["run", "--publish", "blue-green"]).publish == "blue-green"
    assert _parser().parse_args(["run"]).publish == "direct"
    with pytest.raises(SystemExit) as refused:
        _parser().parse_args(["run", "--publish", "green"])
    assert refused.value.code == 2
    assert "argument --publish: invalid choice: 'green'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["build", "run", "seed", "snapshot", "test", "retry"])
def test_what_builds_nodes_can_fan_out(command):
    request = RunRequest.build(command=command, fan_out=4)
    assert request.fan_out == 4
    assert request.describe().endswith("--fan-out 4")
    assert RunRequest.build(command=command, fan_out=1).describe() == command  # one task


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"command": "source freshness", "fan_out": 2}, "fan_out applies to what builds nodes"),
        ({"fan_out": 2, "publish": "blue-green"}, "one version of the whole environment"),
        ({"fan_out": 65}, "fan_out must be a whole number from 0 to 64"),
        ({"fan_out": -1}, "fan_out must be a whole number from 0 to 64"),
        ({"fan_out": True}, "fan_out must be a whole number from 0 to 64"),
        ({"fan_out": 2, "part_of": "parent-1"}, "a part of a fanned-out run is not fanned out"),
        ({"part_of": "../up"}, "is not a run id"),
    ],
)
def test_a_fan_out_that_cannot_run_is_refused(given, message):
    with pytest.raises(InvalidRunRequest, match=message):
        RunRequest.build(**given)
