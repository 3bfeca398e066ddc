"""Golden files: SQL sent to a warehouse no test can reach (Redshift), pinned as text.

`UPDATE_GOLDEN=1 pytest ...` rewrites them; review the diff like any change to what is sent.
"""

from __future__ import annotations

import os
from pathlib import Path


def assert_golden(golden: Path, text: str) -> None:
    """`text` equals the golden file's (rewritten first with UPDATE_GOLDEN=1)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"the Redshift SQL changed: {golden} (UPDATE_GOLDEN=1)"
