"""Every command of the README works verbatim on a fresh clone after `make setup`.

The README's ```bash blocks and the `make <target>` it names in its prose are run, as written,
in a fresh copy of the repository's tracked files, in README order. Only `s3://` URLs become a
temp folder. The copy borrows the repository's `.venv` (a fresh `make setup` takes minutes). The
commands of the sections that change a Prefect server run against one this test starts, with
the channels' secrets set as the README asks. A command is left out only by `_NOT_RUN`, which
says why. A trailing `# exit N` states the exit code (default 0); `, with a warning` means the
run must report one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.notify import automations
from flows.prefect import server as prefect_server
from tests.conftest import REPO

pytestmark = pytest.mark.integration

README = REPO / "README.md"

# What the test does not run, and why. Each must still be a command of the README.
_NOT_RUN = {
    "make test": "runs every test for many minutes, this one included",
    "make demo": "holds port 4200, which a demo of another checkout may hold, for ~2 minutes; "
    "tests/e2e/test_local_stack.py runs the same `ferry stack demo` on a free port",
    "make setup": "syncs .venv, which the copy borrows from the repository: its editable "
    "install would point at the copy (every command here runs after it)",
    "make bench": "a benchmark of minutes (300-model project, three variants, two rounds)",
    "make bench-pinned": "the same benchmark with the server on a CPU of its own",
    "make bench-startup": "a benchmark of minutes (the image's recipe, then timed starts)",
    "make bench-slim-ci": "a benchmark of minutes (two 300-model builds)",
    "make bench-history": "a benchmark of about a minute (2,000 synthetic runs, cold and warm)",
    "make bench-history-step": "a benchmark of about a minute (the example project's builds, "
    "then 2,000 synthetic runs)",
    "make bench-only-changed": "a benchmark of minutes (a 300-model project built in full "
    "and only-changed, side by side)",
    "make bench-diff": "a benchmark of minutes (tables of 1M and 10M rows on DuckDB and "
    "PostgreSQL, diffed three times each)",
    "make bench-publish": "a benchmark of minutes (blue-green vs direct builds of two projects "
    "on DuckDB and PostgreSQL)",
    "make bench-part-selection": "a benchmark of about two minutes (24 dbt ls of a 1,200-node "
    "project)",
    "make bench-server-start": "a benchmark of about two minutes (13 server starts)",
    "make infra-synth": "synthesizes the CDK app in node for about a minute; tests/infra "
    "synthesize the same app",
}

# Sections whose commands change a Prefect server: they run against one the test starts, with
# PREFECT_API_URL set, as the section tells the reader to.
_ON_A_PREFECT_SERVER = ("Deploying and alerting",)

_S3_URL = re.compile(r"s3://\S+")
_EXPECTED = re.compile(r"#\s*exit (\d+)(, with a warning)?")
_INLINE_MAKE = re.compile(r"`(make [a-z][a-z-]*)`")


@dataclass(frozen=True)
class Command:
    line: str  # verbatim, backslash continuations joined
    section: str

    @property
    def key(self) -> str:
        """The command without its comment, as `_NOT_RUN` names it."""
        return " ".join(self.line.split("#", 1)[0].split())

    @property
    def expected_exit(self) -> int:
        found = _EXPECTED.search(self.line)
        return int(found.group(1)) if found else 0

    @property
    def warns(self) -> bool:
        found = _EXPECTED.search(self.line)
        return bool(found and found.group(2))


def readme_commands(text: str) -> list[Command]:
    """Each command line of the ```bash blocks, then each `make <target>` of the prose."""
    commands: list[Command] = []
    inline: list[Command] = []
    section, fence, pending = "", None, ""
    for raw in text.splitlines():
        if fence is None and raw.startswith("## "):
            section = raw[3:].strip()
        if raw.startswith("```"):
            fence = raw[3:].strip() if fence is None else None
            continue
        if fence is None:
            inline += [Command(m, section) for m in _INLINE_MAKE.findall(raw)]
        elif fence == "bash":
            line = f"{pending} {raw.strip()}" if pending else raw.strip()
            if line.endswith("\\"):
                pending = line[:-1].rstrip()
            elif line and not line.startswith("#"):
                commands.append(Command(line, section))
                pending = ""
    seen = {command.key for command in commands}
    for command in inline:
        if command.key not in seen:
            commands.append(command)
            seen.add(command.key)
    return commands


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def _fresh_copy(dest: Path) -> Path:
    """The tracked files as a fresh clone has them; `.venv` is the repository's own."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        source = REPO / name
        if source.is_file():  # tracked but deleted in the working tree: not in a clone either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


def _channel_secrets() -> dict[str, str]:
    """What the README asks the reader to export before `ferry alerts channels apply`."""
    spec = automations.load(REPO / "automations.yaml")
    names = {name for channel in spec.channels for name in channel.secret_env_names()}
    return {
        name: f"http://127.0.0.1:9/{name.lower()}" if name.endswith("_URL") else "readme-test"
        for name in names
    }


def test_every_readme_command_is_run_or_left_out_for_a_reason():
    text = README.read_text()
    commands = readme_commands(text)
    keys = {command.key for command in commands}
    assert any(key.startswith(".venv/bin/ferry run ") for key in keys), keys
    assert not [c.line for c in commands if "..." in c.line], "placeholders are not runnable"
    assert not set(_NOT_RUN) - keys, "left out, but no longer in the README"
    sections = _sections(text)
    for title in _ON_A_PREFECT_SERVER:
        assert "PREFECT_API_URL" in sections[title], f"say in {title!r} where these commands go"
        assert any(c.section == title for c in commands), title
    for name in _channel_secrets():
        assert f"`{name}`" in sections["Deploying and alerting"], name
    for key in _NOT_RUN:  # left out, but the target exists: make prints what it would do
        dry = subprocess.run(["make", "-n", *key.split()[1:]], cwd=REPO, capture_output=True)
        assert dry.returncode == 0, (key, dry.stderr.decode())


def test_every_readme_command_runs_verbatim_in_a_fresh_copy(tmp_path):
    clone = _fresh_copy(tmp_path / "ferry")
    newcomer = {
        k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FERRY_", "DBT_"))
    }
    newcomer["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # never the user's ~/.prefect
    newcomer["PYTHONPATH"] = str(clone)  # `flows` of the copy, as its own editable install
    server: prefect_server.LocalServer | None = None
    failures, timings = [], []
    try:
        for command in readme_commands(README.read_text()):
            if command.key in _NOT_RUN:
                continue
            env = dict(newcomer)
            if command.section in _ON_A_PREFECT_SERVER:
                if server is None:
                    server = prefect_server.start(tmp_path / "prefect-server")
                env |= {"PREFECT_API_URL": server.api_url, **_channel_secrets()}
            line = _S3_URL.sub(str(tmp_path / "artifacts"), command.line)
            started = time.monotonic()
            proc = subprocess.run(
                ["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True,
                timeout=400,
            )  # fmt: skip
            timings.append(f"{time.monotonic() - started:5.1f} s  {command.key[:70]}")
            output = proc.stdout + proc.stderr
            if proc.returncode != command.expected_exit or (
                command.warns and "ferry: warnings:" not in output
            ):
                failures.append(
                    f"{command.line}\n  exit {proc.returncode}, expected "
                    f"{command.expected_exit}{' with a warning' if command.warns else ''}\n"
                    f"{output[-3000:]}"
                )
    finally:
        if server is not None:
            prefect_server.stop(server.pid)
    print("\n" + "\n".join(timings))
    assert not failures, "\n\n".join(failures)
