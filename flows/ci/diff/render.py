"""The data diff as the pull request reads it: a table of models, then each changed model's
details folded (`<details>`), short enough for one GitHub comment."""

from __future__ import annotations

from collections import Counter

from flows.ci.diff.records import DataDiff, DiffStatus, ModelDiff

_ICONS = {
    DiffStatus.IDENTICAL: "✅",
    DiffStatus.CHANGED: "🔶",
    DiffStatus.NEW: "🆕",
    DiffStatus.REMOVED: "🗑️",
    DiffStatus.SKIPPED: "⏭️",
    DiffStatus.ERROR: "❌",
}
_ORDER = [
    DiffStatus.ERROR,
    DiffStatus.CHANGED,
    DiffStatus.NEW,
    DiffStatus.REMOVED,
    DiffStatus.SKIPPED,
    DiffStatus.IDENTICAL,
]
_ROWS = 50  # models in the table before "and N more"
_DETAILS = 15  # models whose details are shown
_TOP_COLUMNS = 3
_VALUE = 60  # characters of a value shown


def render(found: DataDiff) -> str:
    """The "What changed in the data" section (markdown)."""
    per_status = Counter(model.status for model in found.models)
    counts = ", ".join(f"{per_status[s]} {s.value}" for s in _ORDER if per_status[s])
    lines = [
        "### What changed in the data",
        "",
        f"Each model this pull request built, compared with `{found.state_env}` on "
        f"{found.warehouse} ({len(found.models)} models in {found.duration_s:.1f} s)"
        + (f": {counts}." if counts else "."),
    ]
    if not found.models:
        lines += ["", "The run built no model, so no data changed."]
        return "\n".join(lines) + "\n"
    models = sorted(found.models, key=lambda m: _ORDER.index(m.status))
    lines += [
        "",
        f"| model | status | rows ({found.state_env} → PR) | added | removed | changed | "
        "most changed columns / note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for model in models[:_ROWS]:
        lines.append(
            f"| `{model.name}` | {_ICONS[model.status]} {model.status.value} | {_rows(model)} | "
            f"{_n(model.added)} | {_n(model.removed)} | {_n(model.changed)} | {_note(model)} |"
        )
    if len(models) > _ROWS:
        lines.append(f"| and {len(models) - _ROWS} more (diff.json has all) | | | | | | |")
    detailed = [m for m in models if m.status is DiffStatus.CHANGED][:_DETAILS]
    for model in detailed:
        lines += ["", *_details(model, found.state_env)]
    return "\n".join(lines) + "\n"


def _rows(model: ModelDiff) -> str:
    if model.rows.base is None and model.rows.pr is None:
        return ""
    return f"{_n(model.rows.base) or 'none'} → {_n(model.rows.pr) or 'none'}"


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _note(model: ModelDiff) -> str:
    parts = []
    if model.changed_by_column:
        top = list(model.changed_by_column.items())[:_TOP_COLUMNS]
        parts.append(", ".join(f"`{column}` {n:,}" for column, n in top))
    columns = model.columns
    if model.status is DiffStatus.CHANGED and columns.changed:
        schema = [f"+{c}" for c in columns.added] + [f"-{c}" for c in columns.removed]
        schema += [f"~{t.column}" for t in columns.type_changed]
        parts.append("columns " + " ".join(f"`{c}`" for c in schema))
    if model.sample is not None:
        parts.append(f"sample of {model.sample:.1%} of keys")
    if model.reason and (
        model.status in (DiffStatus.SKIPPED, DiffStatus.ERROR)
        or (model.status is not DiffStatus.NEW and model.key is None)
    ):
        parts.append(_cell(model.reason, 160))
    elif model.status in (DiffStatus.CHANGED, DiffStatus.IDENTICAL) and model.key is None:
        parts.append("no key: rows compared as multisets")
    return "; ".join(parts)


def _details(model: ModelDiff, state_env: str) -> list[str]:
    summary = [f"{model.changed:,} rows changed" if model.changed else ""]
    summary += [f"{model.added:,} added" if model.added else ""]
    summary += [f"{model.removed:,} removed" if model.removed else ""]
    if model.columns.changed:
        summary.append("columns changed")
    lines = [
        "<details>",
        f"<summary><code>{model.name}</code>: {', '.join(s for s in summary if s) or 'changed'}"
        "</summary>",
        "",
        f"`{model.base_relation}` ({state_env}) → `{model.pr_relation}` (pull request)"
        + (f"; key `{', '.join(model.key)}` ({model.key_from})" if model.key else "; no key")
        + (f"; compared on a sample of {model.sample:.1%} of keys" if model.sample else ""),
    ]
    columns = model.columns
    if columns.added:
        lines.append(f"- columns added: {', '.join(f'`{c}`' for c in columns.added)}")
    if columns.removed:
        lines.append(f"- columns removed: {', '.join(f'`{c}`' for c in columns.removed)}")
    for change in columns.type_changed:
        lines.append(f"- `{change.column}`: type {change.base} → {change.pr}")
    if model.changed_by_column:
        lines.append(
            "- values changed per column: "
            + ", ".join(f"`{c}` {n:,}" for c, n in model.changed_by_column.items())
        )
    if model.examples:
        key = model.key or []
        lines += [
            "",
            f"| kind | {' | '.join(key)} | column | {state_env} | PR |",
            f"|---|{'---|' * len(key)}---|---|---|",
        ]
        for example in model.examples:
            keys = " | ".join(_cell(example.key.get(k)) for k in key)
            if example.kind != "changed" or not example.changed:
                lines.append(f"| {example.kind} | {keys} | | | |")
                continue
            for column, values in example.changed.items():
                before, after = values if values is not None else ("(sensitive)", "(sensitive)")
                lines.append(
                    f"| {example.kind} | {keys} | `{column}` | {_cell(before)} | {_cell(after)} |"
                )
    changed_profiles = [p for p in model.profiles if p.changed]
    if changed_profiles:
        lines += [
            "",
            "| column | nulls | distinct | min | max | mean |",
            "|---|---|---|---|---|---|",
        ]
        for profile in changed_profiles:
            lines.append(
                f"| `{profile.column}` | {_pair(profile.nulls)} | {_pair(profile.distinct)} | "
                f"{_pair(profile.min)} | {_pair(profile.max)} | {_pair(profile.mean)} |"
            )
    lines += ["", "</details>"]
    return lines


def _pair(pair: tuple[float | int | None, float | int | None] | None) -> str:
    if pair is None:
        return ""
    before, after = pair
    if before == after:
        return _number(before)
    return f"{_number(before)} → {_number(after)}"


def _number(value: float | int | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{int(value):,}"


def _cell(value: str | None, limit: int = _VALUE) -> str:
    """A value in a table cell: one line, cut, pipes escaped; NULL shown as such."""
    if value is None:
        return "*null*"
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'") or '""'
