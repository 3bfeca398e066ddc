"""ferry's local Prefect server (demo, tests, benches): it records what a build reports in
batches, and a new one starts from a migrated database."""

from __future__ import annotations

import contextlib
import sqlite3
from importlib.metadata import entry_points

import httpx
import pytest

from flows.prefect import server as prefect_server

pytestmark = pytest.mark.e2e


def test_the_local_server_batches_task_runs_and_events_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL", "2")
    server = prefect_server.start(tmp_path / "server")
    try:
        settings = httpx.get(f"{server.api_url}/admin/settings", timeout=10).json()
    finally:
        prefect_server.stop(server.pid)
    services = settings["server"]["services"]
    recorder, persister = services["task_run_recorder"], services["event_persister"]
    assert (recorder["batch_size"], recorder["read_batch_size"]) == (200, 200)
    assert (persister["batch_size"], persister["read_batch_size"]) == (200, 200)
    assert recorder["flush_interval"] == 1
    assert persister["flush_interval"] == 2  # the environment's value wins


def test_a_new_server_starts_from_the_first_ones_migrated_database(tmp_path, monkeypatch):
    """The first server keeps its migrated database in the cache; the next starts from a copy
    of it (a mark put into the kept copy is what the next server's API reads) and the kept copy
    is left as it was."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = prefect_server.migrated_template()
    assert template.parent == tmp_path / "cache" / "ferry"

    first = prefect_server.start(tmp_path / "first")
    prefect_server.stop(first.pid)
    with contextlib.closing(sqlite3.connect(template)) as kept:
        assert kept.execute("select count(*) from alembic_version").fetchone() == (1,)
        with kept:
            kept.execute("insert into variable (name, value) values ('mark', '\"kept\"')")
    before = template.read_bytes()

    second = prefect_server.start(tmp_path / "second")
    try:
        mark = httpx.get(f"{second.api_url}/variables/name/mark", timeout=10)
        types = httpx.post(f"{second.api_url}/block_types/filter", json={}, timeout=10)
        settings = httpx.get(f"{second.api_url}/admin/settings", timeout=10).json()
    finally:
        prefect_server.stop(second.pid)
    assert mark.status_code == 200 and mark.json()["value"] == "kept"
    assert template.read_bytes() == before
    # The copy holds the block types the first server registered, its own and the installed
    # collections': the second registers none (nor imports the collections to compare).
    slugs = {t["slug"] for t in types.raise_for_status().json()}
    assert {"slack-webhook", "custom-webhook", "aws-credentials", "dbt-cli-profile"} <= slugs
    assert settings["server"]["register_blocks_on_start"] is False
    assert (tmp_path / "first" / "memo_store.toml").is_file()  # the first registered them
    assert not (tmp_path / "second" / "memo_store.toml").exists()


def test_a_template_is_kept_per_set_of_installed_collections(monkeypatch):
    """A collection installed or upgraded later is never missing from a server's block types:
    its environment gets a template of its own, whose first server registers it."""
    installed = list(entry_points(group="prefect.collections"))
    assert installed, "prefect-aws and prefect-dbt are Prefect collections"
    now = prefect_server.migrated_template()
    monkeypatch.setattr(prefect_server, "entry_points", lambda group: installed[:-1])
    assert prefect_server.migrated_template() != now
    monkeypatch.setattr(prefect_server, "entry_points", lambda group: list(reversed(installed)))
    assert prefect_server.migrated_template() == now  # the same set, in any order


def test_a_cache_that_cannot_be_read_or_written_is_passed_over(tmp_path):
    """Best effort both ways: no template, no copy (the server migrates its own database); a
    cache that cannot be written keeps nothing and leaves nothing behind."""
    database = tmp_path / "home" / "prefect.db"
    database.parent.mkdir()
    assert not prefect_server.copy_migrated(tmp_path / "missing.db", database)
    assert not database.exists()

    with contextlib.closing(sqlite3.connect(database)) as made:
        made.execute("create table alembic_version (version_num text)")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    prefect_server.keep_migrated(database, blocker / "ferry" / "prefect.db")
    assert blocker.read_text() == "a file where the cache folder would be"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache", "home", "prefect.db"]
