"""dbt's docs site: the one self-contained page `dbt docs generate --static` writes, and what
it documents.

`--static` inlines the manifest and the catalog into dbt's page (`static_index.html` in the
target path, beside `index.html`, which would fetch both as separate files): one file that opens
from a disk or an object store, with no server and no network.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

STATIC_PAGE = "static_index.html"
"""What `docs generate --static` writes into the target path (dbt.task.docs.generate)."""

STATIC_FLAG = "--static"

# What the page documents and the catalog describes: the nodes with a relation in the warehouse.
_DOCUMENTED = ("model", "seed", "snapshot", "source")
_PLURAL = {"model": "models", "seed": "seeds", "snapshot": "snapshots", "source": "sources"}


@dataclass(frozen=True)
class Documented:
    """What a `docs generate` documented: the project's nodes, and the relations the catalog
    found for them in the warehouse."""

    nodes: dict[str, int]
    """The project's documented nodes by resource type (model, seed, snapshot, source)."""
    relations: int
    """Tables and views the catalog read from the warehouse (columns, types, statistics)."""

    @property
    def nodes_total(self) -> int:
        return sum(self.nodes.values())

    def describe(self) -> str:
        """e.g. `documented 21 nodes (12 models, 3 seeds, 1 snapshot, 5 sources); the catalog
        has 21 relations from the warehouse`."""
        kinds = ", ".join(
            f"{count} {kind if count == 1 else _PLURAL[kind]}"
            for kind in _DOCUMENTED
            if (count := self.nodes.get(kind, 0))
        )
        nodes = f"{self.nodes_total} node{'s' * (self.nodes_total != 1)}"
        relations = f"{self.relations} relation{'s' * (self.relations != 1)}"
        return (
            f"documented {nodes}{f' ({kinds})' if kinds else ''}; "
            f"the catalog has {relations} from the warehouse"
        )


def documented(manifest: Any, catalog: Any) -> Documented | None:
    """What dbt's catalog (`docs generate`'s result) and the manifest it was made from hold;
    None when `catalog` is not a catalog (dbt failed before writing one)."""
    if manifest is None or not hasattr(catalog, "nodes") or not hasattr(catalog, "sources"):
        return None
    kinds: Counter[str] = Counter(
        str(getattr(node.resource_type, "value", node.resource_type))
        for node in [*manifest.nodes.values(), *manifest.sources.values()]
    )
    return Documented(
        nodes={kind: kinds[kind] for kind in _DOCUMENTED if kinds[kind]},
        relations=len(catalog.nodes) + len(catalog.sources),
    )
