"""docs/settings.md: generated from the settings and the files that read the other FERRY_*
names, never stale, and listing every FERRY_* name the repository uses."""

import re
import subprocess

from flows.settings_doc import PAGE, REPO, render

_NAME = re.compile(r"\bFERRY_[A-Z0-9_]+")


def test_the_settings_page_is_up_to_date():
    assert (REPO / PAGE).read_text() == render(), (
        f"{PAGE} is stale: run `make settings-doc` and commit it"
    )


def test_every_ferry_name_in_the_repository_is_on_the_settings_page():
    """Any FERRY_* name in a tracked file is on the page, except:
    - names ending in `_`: prefixes in prose (`FERRY_PG_`, `FERRY_REDSHIFT_`, `FERRY_STATE_`);
    - names only tests use (`FERRY_TEST_HOOK_URL` for a test's own channel, `FERRY_X`);
    - the page itself."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    outside_tests: set[str] = set()
    for name in tracked:
        path = REPO / name
        if not name or name == str(PAGE) or name.startswith("tests/") or not path.is_file():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        outside_tests.update(found for found in _NAME.findall(text) if not found.endswith("_"))
    listed = set(re.findall(r"`(FERRY_[A-Z0-9_]+)`", (REPO / PAGE).read_text()))
    assert {"FERRY_ENV", "FERRY_PG_HOST", "FERRY_BAKE"} <= outside_tests  # the scan found them
    missing = sorted(outside_tests - listed)
    assert not missing, f"not on {PAGE}: {missing}; name their reader in flows/settings_doc.py"
