"""Notification channels: Prefect notification blocks created or updated from configuration.

The Prefect server loads the block itself when an automation fires, so a channel must be one
of Prefect's own notification blocks (a block class of ferry's would need ferry installed in
the server's image): Slack Webhook, Sendgrid Email and Custom Webhook. Secrets come from
environment variables the configuration names, so the configuration holds none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    SendgridEmail,
    SlackWebhook,
)
from prefect.exceptions import ObjectNotFound
from prefect.types import SecretDict
from prefect.utilities.templating import find_placeholders
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from flows.notify.changes import Change, ChangeKind, NotifyConfigError

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

BLOCK_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"  # Prefect's rule for block document names
_ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
_WEBHOOK_VALUES = frozenset({"subject", "body", "name"})  # what Custom Webhook substitutes
_URL_SECRET = "webhook_url"

NotifyType = Literal["info", "success", "warning", "failure"]
EnvName = Annotated[str, Field(pattern=_ENV_NAME_PATTERN)]


class _Channel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    block_class: ClassVar[type[NotificationBlock]]

    name: str = Field(
        pattern=BLOCK_NAME_PATTERN,
        description="The Prefect block's name; automations name their channels by it.",
    )

    @property
    def block_type_slug(self) -> str:
        return self.block_class.get_block_type_slug()

    def secret_env_names(self) -> list[str]:
        """Environment variables holding this channel's secrets, all required."""
        raise NotImplementedError

    def build(self, secrets: Mapping[str, str]) -> NotificationBlock:
        """The block, given the values of `secret_env_names()`."""
        raise NotImplementedError


class SlackChannel(_Channel):
    """A Slack incoming webhook."""

    block_class = SlackWebhook

    type: Literal["slack"]
    url_env: EnvName = Field(description="Environment variable holding the webhook URL.")
    notify_type: NotifyType = Field(
        default="failure", description="Slack's colour and icon: failure (red), warning..."
    )

    def secret_env_names(self) -> list[str]:
        return [self.url_env]

    def build(self, secrets: Mapping[str, str]) -> NotificationBlock:
        return SlackWebhook(url=SecretStr(secrets[self.url_env]), notify_type=self.notify_type)


class EmailChannel(_Channel):
    """E-mail through SendGrid: the e-mail notification block Prefect's server ships with.

    prefect-email's `EmailServerCredentials` (SMTP) is no notification block: automations
    cannot send through it.
    """

    block_class = SendgridEmail

    type: Literal["email"]
    api_key_env: EnvName = Field(description="Environment variable holding the API key.")
    sender: str = Field(description="The From address (a sender verified in SendGrid).")
    to: list[str] = Field(min_length=1, description="Recipients.")
    notify_type: NotifyType = "failure"

    def secret_env_names(self) -> list[str]:
        return [self.api_key_env]

    def build(self, secrets: Mapping[str, str]) -> NotificationBlock:
        return SendgridEmail(
            api_key=SecretStr(secrets[self.api_key_env]),
            sender_email=self.sender,
            to_emails=list(self.to),
            notify_type=self.notify_type,
        )


class WebhookChannel(_Channel):
    """Any HTTP endpoint (Prefect's Custom Webhook): receives the subject and body as JSON.

    The URL is stored among the block's secrets rather than in its plain `url` field: webhook
    URLs often carry a token, and secrets are what Prefect hides in its UI and API.
    """

    block_class = CustomWebhookNotificationBlock

    type: Literal["webhook"]
    url_env: EnvName = Field(description="Environment variable holding the URL.")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    payload: dict[str, Any] = Field(
        default_factory=lambda: {"subject": "{{subject}}", "body": "{{body}}"},
        description=(
            "The JSON body; {{subject}}, {{body}}, {{name}} and the keys of secrets_env "
            "are substituted."
        ),
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Same substitutions.")
    secrets_env: dict[str, EnvName] = Field(
        default_factory=dict,
        description="Placeholder name -> environment variable, e.g. {token: ALERT_TOKEN}.",
    )
    timeout_s: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _placeholders_are_known(self) -> WebhookChannel:
        known = _WEBHOOK_VALUES | set(self.secrets_env)
        used = {p.name for p in find_placeholders([self.payload, self.headers])}
        if unknown := sorted(used - known):
            raise ValueError(
                f"unknown placeholders {unknown}: use {sorted(_WEBHOOK_VALUES)} or add them "
                "to secrets_env"
            )
        if _URL_SECRET in self.secrets_env:
            raise ValueError(f"secrets_env may not define {_URL_SECRET!r} (it holds the URL)")
        return self

    def secret_env_names(self) -> list[str]:
        return [self.url_env, *self.secrets_env.values()]

    def build(self, secrets: Mapping[str, str]) -> NotificationBlock:
        values = {key: secrets[env] for key, env in self.secrets_env.items()}
        return CustomWebhookNotificationBlock(
            name=self.name,
            url="{{" + _URL_SECRET + "}}",
            method=self.method,
            json_data=self.payload,
            headers=self.headers or None,
            cookies=None,
            timeout=self.timeout_s,
            secrets=SecretDict({**values, _URL_SECRET: secrets[self.url_env]}),
        )


Channel = Annotated[SlackChannel | EmailChannel | WebhookChannel, Field(discriminator="type")]


def build_blocks(
    channels: Sequence[Channel], environ: Mapping[str, str]
) -> list[tuple[Channel, NotificationBlock]]:
    """Each channel's block, its secrets read from `environ`.

    Raises:
        NotifyConfigError: secrets are missing (all of them are named) or a block refuses its
            values (e.g. an e-mail address apprise cannot parse).
    """
    missing: dict[str, list[str]] = {}
    for channel in channels:
        for env in channel.secret_env_names():
            if not environ.get(env):
                missing.setdefault(env, []).append(channel.name)
    if missing:
        named = ", ".join(f"{env} (for {', '.join(users)})" for env, users in missing.items())
        raise NotifyConfigError(
            f"missing secrets: set {named} in the environment (secrets are never written in "
            "the repository), or remove those channels from the file"
        )
    blocks: list[tuple[Channel, NotificationBlock]] = []
    for channel in channels:
        secrets = {env: environ[env] for env in channel.secret_env_names()}
        try:
            blocks.append((channel, channel.build(secrets)))
        except (ValueError, TypeError, KeyError) as exc:
            raise NotifyConfigError(f"channel {channel.name}: {exc}") from exc
    return blocks


async def apply_channels(
    channels: Sequence[Channel],
    client: PrefectClient,
    environ: Mapping[str, str],
    *,
    dry_run: bool = False,
) -> list[Change]:
    """Creates or updates one notification block per channel, matched by type and name.

    Args:
        channels: The channels to have on the server.
        client: A client of the Prefect API to change.
        environ: Where the secrets are read (the CLI passes the process environment).
        dry_run: Compare only; change nothing.

    Returns:
        One change per channel, in the order given.
    """
    changes: list[Change] = []
    for channel, block in build_blocks(channels, environ):
        try:
            existing = await client.read_block_document_by_name(
                channel.name, channel.block_type_slug, include_secrets=True
            )
        except ObjectNotFound:
            kind = ChangeKind.CREATED
        else:
            same = existing.data == block_data(block)
            kind = ChangeKind.UNCHANGED if same else ChangeKind.UPDATED
        if kind is not ChangeKind.UNCHANGED and not dry_run:
            await block.asave(channel.name, overwrite=True, client=client)
        changes.append(Change(kind, channel.name))
    return changes


def block_data(block: NotificationBlock) -> dict[str, Any]:
    """A block's values as the API stores them, secrets included (to compare, never print)."""
    return block.model_dump(
        mode="json",
        by_alias=True,
        include=set(type(block).model_fields),
        context={"include_secrets": True},
    )
