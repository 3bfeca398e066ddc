"""`ferry` is one tree grouped by job: every leaf says what it does, every group is listed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from flows.cli import _parser

GROUPS = {"run", "history", "report", "rollback", "stack", "packages", "alerts", "release", "ci"}
LEAVES = {
    "ferry run",
    "ferry history",
    "ferry report",
    "ferry rollback",
    "ferry stack up",
    "ferry stack down",
    "ferry stack demo",
    "ferry packages install",
    "ferry packages update",
    "ferry alerts channels apply",
    "ferry alerts automations apply",
    "ferry release bake",
    "ferry release promote",
    "ferry release scan",
    "ferry release deploy",
    "ferry release smoke",
    "ferry release ecs-template",
    "ferry ci schema drop",
    "ferry ci schema sweep",
    "ferry ci stack-env",
    "ferry ci diff",
    "ferry ci report",
    "ferry ci comment",
}


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0] if actions else None


def _leaves(parser: argparse.ArgumentParser, help_text: str) -> Iterator[tuple[str, str]]:
    """(prog, its line in the parent's help) of every command that runs, depth first."""
    sub = _subcommands(parser)
    if sub is None:
        yield parser.prog, help_text
        return
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    for name, child in sub.choices.items():
        yield from _leaves(child, helps[name])


def test_every_leaf_command_says_what_it_does():
    leaves = dict(_leaves(_parser(), ""))
    assert set(leaves) == LEAVES
    for prog, help_text in leaves.items():
        assert help_text.strip(), f"`{prog}` has no line in its group's help"


def test_every_group_says_what_it_is_for():
    sub = _subcommands(_parser())
    assert sub is not None
    for choice in sub._choices_actions:
        assert (choice.help or "").strip(), choice.dest


def test_ferry_help_lists_exactly_the_groups():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ferry")), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    sub = _subcommands(_parser())
    assert sub is not None and set(sub.choices) == GROUPS
    listed = {
        line.split()[0]
        for line in done.stdout.splitlines()
        if line.startswith("    ") and not line.startswith("     ")
    }
    assert listed == GROUPS, done.stdout


def test_the_old_flat_names_are_gone():
    sub = _subcommands(_parser())
    assert sub is not None
    for old in ("channels", "automations", "bake", "promote", "scan", "deploy", "smoke"):
        assert old not in sub.choices
    assert "ci-schema" not in sub.choices
