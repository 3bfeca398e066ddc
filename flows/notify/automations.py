"""automations.yaml: ferry's alerts as Prefect automations, applied idempotently by name.

`prefect automation create` adds a new automation on every call, so alerts would double with
each deploy. `apply` instead matches what exists by name: it creates what is missing, updates
what differs, leaves what matches alone and deletes duplicates of a name, keeping one. It also
deletes what the file no longer names, but only automations carrying ferry's tag: one made by
hand in the UI is never touched.

Leaving an unchanged automation alone matters beyond tidiness: Prefect resets a trigger's
state when its automation is updated, so a proactive alert's wait would start over on every
deploy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import yaml
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import (
    AutomationCore,
    CompositeTrigger,
    CompoundTrigger,
    EventTrigger,
    MetricTrigger,
    Posture,
    SequenceTrigger,
    TriggerTypes,
    trigger_discriminator,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.notify.changes import Change, ChangeKind, NotifyConfigError
from flows.notify.channels import Channel

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.events.schemas.automations import Automation

MANAGED_TAG = "ferry"
"""Tag on every automation ferry applies, to find them in the UI and API: `apply` deletes one
that carries it once automations.yaml no longer names it."""

_TRIGGER_CLASSES: dict[str, type[BaseModel]] = {
    "event": EventTrigger,
    "metric": MetricTrigger,
    "compound": CompoundTrigger,
    "sequence": SequenceTrigger,
}
_CORE_FIELDS = frozenset(AutomationCore.model_fields)
_UNION_TAGS = {*_TRIGGER_CLASSES, "slack", "email", "webhook"}
_DURATION = TypeAdapter(timedelta)  # seconds, "HH:MM:SS" or ISO 8601 ("PT26H")
_PAGE = 200  # the most the server returns per call (PREFECT_SERVER_API_DEFAULT_LIMIT)
_STALE = "no longer in automations.yaml"


class Notify(BaseModel):
    """One notification per firing, sent to each channel: Jinja templates rendered by the
    Prefect server with `event` (the triggering event), `flow_run`, `deployment`..."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: list[str] = Field(min_length=1, description="Names of channels in this file.")
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)

    @field_validator("subject", "body")
    @classmethod
    def _is_a_template_the_server_accepts(cls, value: str) -> str:
        import jinja2
        from prefect.server.utilities.user_templates import (
            TemplateSecurityError,
            validate_user_template,
        )

        try:
            validate_user_template(value)
        except (jinja2.TemplateSyntaxError, TemplateSecurityError) as exc:
            raise ValueError(f"not a valid template: {exc} (line {exc.lineno})") from exc
        return value


class AutomationSpec(BaseModel):
    """One automation: a Prefect trigger (Prefect's own schema) and who to notify."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Unique: apply matches existing ones by it.")
    description: str = ""
    enabled: bool = True
    trigger: TriggerTypes
    notify: Notify

    @field_validator("trigger", mode="before")
    @classmethod
    def _known_keys_and_durations(cls, value: Any) -> Any:
        return _prepare_trigger(value)

    @field_validator("trigger")
    @classmethod
    def _event_triggers_expect_something(cls, value: Any) -> Any:
        for trigger in _event_triggers(value):
            if not trigger.expect:
                raise ValueError("`expect` is empty: the trigger would match every event")
        return value


class AlertsSpec(BaseModel):
    """The whole of automations.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: list[Channel] = Field(default_factory=list)
    automations: list[AutomationSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> AlertsSpec:
        for kind, names in (
            ("channel", [c.name for c in self.channels]),
            ("automation", [a.name for a in self.automations]),
        ):
            if dupes := sorted({n for n in names if names.count(n) > 1}):
                raise ValueError(f"{kind} names must be unique; repeated: {dupes}")
        defined = {c.name for c in self.channels}
        for automation in self.automations:
            if unknown := [c for c in automation.notify.channels if c not in defined]:
                raise ValueError(
                    f"automation {automation.name!r} notifies {unknown}, which the `channels` "
                    f"section does not define (defined: {sorted(defined)})"
                )
        for a, b in combinations(self.automations, 2):
            if shared := _shared_events(a.trigger, b.trigger):
                raise ValueError(
                    f"automations {a.name!r} and {b.name!r} both notify on {sorted(shared)} "
                    "for the same resources, so one run would alert twice; list several "
                    "channels on one automation instead"
                )
        return self

    def channel(self, name: str) -> Channel:
        return next(c for c in self.channels if c.name == name)


def load(path: Path) -> AlertsSpec:
    """Reads and validates automations.yaml.

    Raises:
        NotifyConfigError: the file is missing, not YAML, or not valid; every problem is
            named with where it is.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotifyConfigError(
            f"{path}: no such file (automations.yaml lives beside prefect.yaml; or pass --file)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NotifyConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse(data, source=str(path))


def parse(data: Any, source: str = "automations.yaml") -> AlertsSpec:
    """Validates the YAML document of automations.yaml (see `load`)."""
    if not isinstance(data, dict):
        raise NotifyConfigError(
            f"{source}: expected a mapping with `channels` and `automations`, got "
            f"{type(data).__name__}"
        )
    try:
        return AlertsSpec.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  {_where(e['loc'], data)}: {e['msg']}" for e in exc.errors())
        raise NotifyConfigError(f"{source} is not valid:\n{problems}") from None


def render(spec: AutomationSpec, block_ids: Mapping[str, UUID]) -> AutomationCore:
    """The automation as Prefect stores it, its channels resolved to block document ids."""
    core = AutomationCore(
        name=spec.name,
        description=spec.description,
        enabled=spec.enabled,
        tags=[MANAGED_TAG],
        trigger=spec.trigger,
        actions=[
            SendNotification(
                block_document_id=block_ids[channel],
                subject=spec.notify.subject,
                body=spec.notify.body,
            )
            for channel in spec.notify.channels
        ],
        actions_on_trigger=[],
        actions_on_resolve=[],
    )
    # Every field explicitly set, nested ones too: the client sends updates with
    # `exclude_unset`, and an update must replace the whole automation. Except the owner:
    # the server's update model refuses that field, even as null.
    return AutomationCore.model_validate(core.model_dump(exclude={"owner_resource"}))


@dataclass(frozen=True)
class Plan:
    """What to do about one name: the change, the automation to update, the ones to delete."""

    kind: ChangeKind
    target: UUID | None = None
    duplicates: tuple[UUID, ...] = field(default_factory=tuple)


def diff(desired: AutomationCore, existing: Sequence[Automation]) -> Plan:
    """Compares one desired automation with those of its name on the server.

    Keeps one that already matches when there is one (so nothing changes), else any; of
    several, the least recently updated (the last: `read_automations_by_name` sorts newest
    first), whose proactive window has run longest. The rest are duplicates.
    """
    if not existing:
        return Plan(ChangeKind.CREATED)
    wanted = desired.model_dump()
    matching = [a for a in existing if _as_core(a).model_dump() == wanted]
    keep = (matching or list(existing))[-1]
    kind = ChangeKind.UNCHANGED if matching else ChangeKind.UPDATED
    return Plan(kind, keep.id, tuple(a.id for a in existing if a.id != keep.id))


def stale(spec: AlertsSpec, on_server: Sequence[Automation]) -> list[Automation]:
    """ferry's automations on the server that `spec` no longer names, to delete.

    The tag is checked here, not only in the server's filter: an automation made by hand must
    survive even a server that ignored the filter.
    """
    named = {a.name for a in spec.automations}
    return [a for a in on_server if MANAGED_TAG in a.tags and a.name not in named]


async def apply(spec: AlertsSpec, client: PrefectClient, *, dry_run: bool = False) -> list[Change]:
    """Makes the server's automations match `spec`, by name; prints nothing.

    Automations not in `spec` are deleted when they carry ferry's tag (renaming one here
    replaces it) and left alone otherwise.

    Args:
        spec: The validated automations.yaml.
        client: A client of the Prefect API to change.
        dry_run: Compare only; change nothing.

    Returns:
        Per automation in file order: created, updated or unchanged, then a
        `deleted duplicate` for each extra automation of that name; last, a `deleted` for
        each of ferry's automations the file no longer names.

    Raises:
        NotifyConfigError: a channel's block does not exist yet (run `ferry alerts channels apply`).
    """
    block_ids = await _block_ids(spec, client)
    changes: list[Change] = []
    for automation in spec.automations:
        desired = render(automation, block_ids)
        plan = diff(desired, await client.read_automations_by_name(automation.name))
        if not dry_run:
            if plan.kind is ChangeKind.CREATED:
                await client.create_automation(desired)
            elif plan.kind is ChangeKind.UPDATED:
                assert plan.target is not None
                await client.update_automation(plan.target, desired)
            for duplicate in plan.duplicates:
                await client.delete_automation(duplicate)
        changes.append(Change(plan.kind, automation.name))
        changes += [Change(ChangeKind.DELETED_DUPLICATE, automation.name)] * len(plan.duplicates)
    for gone in stale(spec, await _tagged(client)):
        if not dry_run:
            await client.delete_automation(gone.id)
        changes.append(Change(ChangeKind.DELETED, gone.name, _STALE))
    return changes


async def _tagged(client: PrefectClient) -> list[Automation]:
    """Every automation on the server with ferry's tag, by name; all read before any is
    deleted, so the pages do not shift under the reading."""
    from prefect.client.schemas.sorting import AutomationSort
    from prefect.events.filters import AutomationFilter, AutomationFilterTags

    ours = AutomationFilter(tags=AutomationFilterTags(all_=[MANAGED_TAG]))
    found: list[Automation] = []
    while True:
        page = await client.read_automations(
            automations=ours, sort=AutomationSort.NAME_ASC, limit=_PAGE, offset=len(found)
        )
        found += page
        if len(page) < _PAGE:
            return found


async def _block_ids(spec: AlertsSpec, client: PrefectClient) -> dict[str, UUID]:
    """The block document id of every channel an automation uses, by channel name."""
    from prefect.exceptions import ObjectNotFound

    used = {name for a in spec.automations for name in a.notify.channels}
    ids: dict[str, UUID] = {}
    missing: list[str] = []
    for name in sorted(used):
        channel = spec.channel(name)
        try:
            document = await client.read_block_document_by_name(
                name, channel.block_type_slug, include_secrets=False
            )
        except ObjectNotFound:
            missing.append(f"{name} ({channel.block_type_slug})")
        else:
            ids[name] = document.id
    if missing:
        raise NotifyConfigError(
            "these channels have no notification block on the server yet: "
            + ", ".join(missing)
            + "; run `ferry alerts channels apply` first"
        )
    return ids


def _as_core(automation: Automation) -> AutomationCore:
    return AutomationCore.model_validate(automation.model_dump(include=set(_CORE_FIELDS)))


def _prepare_trigger(value: Any) -> Any:
    """Refuses unknown keys and reads `within` as a duration, before Prefect sees the trigger.

    Prefect's triggers ignore unknown keys: a typo such as `expects:` would silently leave
    `expect` empty, which matches every event. And they accept `within` only in seconds
    (a string such as `PT26H` makes them raise a TypeError).
    """
    if not isinstance(value, dict):
        return value
    cls = _TRIGGER_CLASSES.get(trigger_discriminator(value))
    if cls is None:
        return value  # Prefect's own validation names the valid types
    if unknown := sorted(set(value) - set(cls.model_fields)):
        raise ValueError(
            f"unknown trigger keys {unknown}; a {cls.__name__} has {sorted(cls.model_fields)}"
        )
    prepared = dict(value)
    if isinstance(within := prepared.get("within"), str):
        try:
            prepared["within"] = _DURATION.validate_python(within)
        except ValidationError:
            raise ValueError(
                f"within: {within!r} is no duration; write seconds (93600), HH:MM:SS or "
                "ISO 8601 (PT26H)"
            ) from None
    if isinstance(prepared.get("triggers"), list):
        prepared["triggers"] = [_prepare_trigger(t) for t in prepared["triggers"]]
    return prepared


def _event_triggers(trigger: Any) -> list[EventTrigger]:
    if isinstance(trigger, EventTrigger):
        return [trigger]
    if isinstance(trigger, CompositeTrigger):
        return [t for nested in trigger.triggers for t in _event_triggers(nested)]
    return []


def _shared_events(a: Any, b: Any) -> set[str]:
    """Event names two reactive triggers both fire on, for the same resource filters."""
    if not (isinstance(a, EventTrigger) and isinstance(b, EventTrigger)):
        return set()
    if Posture.Reactive not in (a.posture, b.posture) or a.posture != b.posture:
        return set()
    if (a.match, a.match_related) != (b.match, b.match_related):
        return set()  # e.g. one automation per environment: different runs
    return {x for x in a.expect for y in b.expect if _names_overlap(x, y)}


def _names_overlap(x: str, y: str) -> bool:
    """Event names with Prefect's trailing-wildcard rule (`prefect.flow-run.*`)."""
    if x.endswith("*") and y.startswith(x[:-1]):
        return True
    return x == y or (y.endswith("*") and x.startswith(y[:-1]))


def _where(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """`automations[2] (ferry - dbt run failed).trigger.within` from a pydantic location."""
    parts: list[str] = []
    previous: int | str | None = None
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            item = _item(data, loc[: i + 1])
            if isinstance(item, dict) and item.get("name"):
                parts[-1] += f" ({item['name']})"
        elif part in _UNION_TAGS and (previous == "trigger" or isinstance(previous, int)):
            pass  # the union member pydantic tried, not a key of the file
        else:
            parts.append(str(part))
        previous = part
    return ".".join(parts) or "(top level)"


def _item(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data
