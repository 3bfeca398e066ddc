"""The docs speak to users: no issue-tracker talk, no paths of one machine, no dead test names.

The docs prove their claims by naming tests (`tests/<path>.py::test_name`). Code and tests are
renamed as the project grows; this is the test that says which claims lost their proof.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

# The product's prose: what a user or an adopter reads.
USER_DOCS = sorted(
    [
        *(REPO / "docs").glob("*.md"),
        REPO / "README.md",
        REPO / "bench" / "README.md",
        REPO / "dbt_project" / "README.md",
    ]
)
# The docs whose claims name the tests that prove them.
PROVING_DOCS = sorted([*(REPO / "docs").glob("*.md"), REPO / "README.md"])

_TRACKER = [
    re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE),  # issue 9, issue #9
    re.compile(r"(?<![\w/&])#\d+\b"),  # #12, PR #12 (a link to another project's is fine)
    re.compile(
        r"\b(?:this|that|the (?:previous|next|last|earlier|same)|an? (?:earlier|previous)) "
        r"(?:issue|ticket)\b",
        re.IGNORECASE,
    ),
]
# A path of the machine the docs were written on, not of the product (a URL's path does not
# count: the lookbehind skips anything glued to a host or another path segment).
_LOCAL_PATH = re.compile(r"(?<![\w.~:/-])/(?:work|root|home|Users|tmp|var/folders)/[^\s`)'\"]*")
# The image's own writable paths (docs/image.md): every container of the image has them.
_IMAGE_PATHS = ("/tmp/ferry", "/tmp/prefect")

_DEFINITION = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)", re.MULTILINE)
_TEST_REF = re.compile(r"(?<![\w/.-])(tests/[\w/]+\.py)((?:::\w+)+)?(\[[^\]\s]*\])?")


def _doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def _lines(path: Path) -> list[tuple[int, str]]:
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))


@cache
def _defined_names(path: Path) -> frozenset[str]:
    """The functions (sync or async) and classes a test file defines, read as text: a file in
    the middle of an edit still answers."""
    return frozenset(_DEFINITION.findall(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("doc", USER_DOCS, ids=_doc_id)
def test_no_doc_refers_to_an_issue_tracker(doc: Path):
    found = [
        f"{_doc_id(doc)}:{number}: {match.group(0)!r}"
        for number, line in _lines(doc)
        for pattern in _TRACKER
        for match in pattern.finditer(line)
    ]
    assert not found, "say what the change is, not where it was tracked:\n" + "\n".join(found)


@pytest.mark.parametrize("doc", USER_DOCS, ids=_doc_id)
def test_no_doc_names_a_path_of_one_machine(doc: Path):
    found = [
        f"{_doc_id(doc)}:{number}: {match.group(0)!r}"
        for number, line in _lines(doc)
        for match in _LOCAL_PATH.finditer(line)
        if not match.group(0).startswith(_IMAGE_PATHS)
    ]
    assert not found, "use a path relative to the repository or a placeholder:\n" + "\n".join(found)


@pytest.mark.parametrize("doc", PROVING_DOCS, ids=_doc_id)
def test_every_test_a_doc_names_exists(doc: Path):
    missing = []
    for number, line in _lines(doc):
        for match in _TEST_REF.finditer(line):
            file, names = match.group(1), match.group(2)
            where = f"{_doc_id(doc)}:{number}: {match.group(0)}"
            if not (REPO / file).is_file():
                missing.append(f"{where}: no file {file}")
                continue
            for name in (names or "").split("::")[1:]:
                if name not in _defined_names(REPO / file):
                    missing.append(f"{where}: no `def {name}` in {file}")
    assert not missing, "a claim lost its proof:\n" + "\n".join(missing)


def test_the_checks_catch_what_they_are_for():
    """The patterns themselves, on lines they must and must not flag."""
    flagged = ["fixed in issue 4", "see issue #9", "as #12 asked", "PR #19432", "this issue"]
    allowed = [
        "[fix](https://github.com/PrefectHQ/prefect/pull/19432)",
        "one per issuer per account",
        "[errors.md](errors.md#decisions-behind-the-table)",
        "`ci_pr_12`",
    ]
    assert all(any(p.search(line) for p in _TRACKER) for line in flagged)
    assert not any(p.search(line) for p in _TRACKER for line in allowed)

    assert _LOCAL_PATH.search("kept in /home/alice/ferry/.venv")
    assert _LOCAL_PATH.search("a checkout in /Users/bob/ferry")
    assert _LOCAL_PATH.search("see `/tmp/pytest-of-root/x`")
    assert _LOCAL_PATH.search("(/root/.cache/uv)")
    assert not _LOCAL_PATH.search("s3://bucket/tmp/x and https://example.com/home/x")
    assert not _LOCAL_PATH.search("writes only under `/tmp`")

    refs = _TEST_REF.findall("`tests/e2e/test_x.py::test_y[local-2]` and tests/unit/test_z.py")
    assert refs == [
        ("tests/e2e/test_x.py", "::test_y", "[local-2]"),
        ("tests/unit/test_z.py", "", ""),
    ]
