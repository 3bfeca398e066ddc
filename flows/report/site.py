"""The report as it is published: the page, and plotly.js in `assets/` beside it.

plotly.js is 4.8 MB and changes only with the installed plotly package, while the page changes
with every run: so the page names it by a path relative to itself (`assets/plotly-<version>
.min.js`), and a store or a folder receives it once per plotly.js version. A run then writes
the page alone, kilobytes; the folder, or a download of it, opens offline as it is.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from flows.artifacts import ArtifactStore

ASSETS = "assets"
"""The folder beside the page that holds the files it loads."""
_BANNER = re.compile(rb"plotly\.js v(\d+\.\d+\.\d+[\w.+-]*)")


@dataclass(frozen=True)
class Published:
    """What one publish wrote: the page's bytes, and plotly.js's (0 when it was there)."""

    page_bytes: int
    asset_bytes: int

    def describe(self) -> str:
        asset = f" and plotly.js ({self.asset_bytes:,} bytes)" if self.asset_bytes else ""
        return f"the page ({self.page_bytes:,} bytes){asset}"


def plotly_js_path() -> str:
    """Where the page loads plotly.js from, relative to the page."""
    return f"{ASSETS}/{_plotly_js_name()}"


def publish(store: ArtifactStore, page_key: str, page: str) -> Published:
    """Writes `page` at `page_key`, after plotly.js beside it when the store lacks that version.

    plotly.js goes first, so a reader never gets a page whose plotly.js is missing; both are
    written whole (put_bytes) so a file that exists is complete, and its name carries its
    version, so one that exists is the right one.

    Raises:
        flows.artifacts.ArtifactStoreError, OSError: the store could not be read or written.
        LookupError: the plotly package (which ships plotly.js) is not installed.
    """
    folder = page_key.rpartition("/")[0]
    assets = f"{folder}/{ASSETS}/" if folder else f"{ASSETS}/"
    key = f"{assets}{_plotly_js_name()}"
    asset_bytes = 0
    if key not in set(store.list_keys(assets)):
        data = _plotly_js_file().read_bytes()
        store.put_bytes(key, data)
        asset_bytes = len(data)
    body = page.encode()
    store.put_bytes(page_key, body)
    return Published(page_bytes=len(body), asset_bytes=asset_bytes)


@cache
def _plotly_js_file() -> Path:
    """plotly.min.js as the installed plotly package ships it; found without importing plotly
    (60 ms of imports a run has no use for)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise LookupError("the plotly package is not installed: it ships the report's plotly.js")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise LookupError(f"the plotly package has no plotly.js at {path}")
    return path


@cache
def _plotly_js_name() -> str:
    """`plotly-<version>.min.js`, the version read from plotly.js's own banner."""
    with _plotly_js_file().open("rb") as js:
        match = _BANNER.search(js.read(200))
    if match is None:
        raise LookupError(f"{_plotly_js_file()} does not say its plotly.js version")
    return f"plotly-{match[1].decode()}.min.js"
