"""Stale sources across `dbt source freshness` runs: alert once per stale period.

Freshness is checked often (hourly, say) and a source can stay stale for a day; an alert every
hour while nothing changed teaches people to ignore it. So each freshness run is compared with
the sources the environment's previous freshness run found stale, kept in the artifact store
(`<project>/<env>/history/stale_sources.json`), and only a source that turned stale, or went
from warn to error, is news. A source that is fresh again ends its stale period: when it turns
stale later, that is news again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from flows.artifacts import ArtifactStore
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history.store import history_prefix

_LEVEL = {NodeStatus.WARN: 1, NodeStatus.ERROR: 2}


def stale_key(project: str, env: str) -> str:
    return f"{history_prefix(project, env)}/stale_sources.json"


@dataclass(frozen=True)
class Staleness:
    """What a freshness run found, against the previous one."""

    new: list[str]
    """Sources that turned stale (or from warn to error) since the previous freshness run."""
    ongoing: list[str]
    """Sources still stale at the same level or lower: already alerted."""
    recovered: list[str]
    """Sources stale before and fresh now."""


def advance(
    store: ArtifactStore, project: str, env: str, nodes: list[NodeResult], now: datetime
) -> Staleness:
    """Compares the run's source results with the stored stale set, then stores the new one.

    A source whose freshness query itself failed (runtime error) keeps its earlier mark: its
    state is unknown, not fresh.

    Raises:
        flows.artifacts.ArtifactStoreError (or OSError, ValueError): the stale set could not be
            read or written; the caller then alerts as if every stale source were new.
    """
    raw = store.get_bytes(stale_key(project, env))
    before: dict[str, dict[str, str]] = json.loads(raw)["stale"] if raw else {}
    after: dict[str, dict[str, str]] = {}
    new, ongoing, recovered = [], [], []
    for node in nodes:
        if node.resource_type != "source":
            continue
        earlier = before.get(node.unique_id)
        level = _LEVEL.get(node.status)
        if node.status is NodeStatus.RUNTIME_ERROR:
            if earlier:
                after[node.unique_id] = earlier
            continue
        if level is None:
            if earlier:
                recovered.append(node.unique_id)
            continue
        if earlier and _LEVEL[NodeStatus(earlier["status"])] >= level:
            ongoing.append(node.unique_id)
            after[node.unique_id] = earlier
        else:
            new.append(node.unique_id)
            after[node.unique_id] = {"status": node.status.value, "since": now.isoformat()}
    # Sources this run did not check (a selection) keep their marks.
    checked = {n.unique_id for n in nodes}
    after.update({k: v for k, v in before.items() if k not in checked})
    store.put_bytes(stale_key(project, env), json.dumps({"stale": after}, indent=2).encode())
    return Staleness(new=sorted(new), ongoing=sorted(ongoing), recovered=sorted(recovered))
