"""What every `ferry <group> <verb>` shares: one exit code per kind of trouble, one line on stderr.

A verb's function returns an `ExitCode`, or raises `Refused` (bad input, exit 2) or `Failed` (the
work failed, exit 1); `classify` turns the exceptions of the functions it calls into one of the
two, decided per command. The leaf prints `ferry <group> <verb>: <message>`, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from flows.exit_codes import ExitCode


class Refused(Exception):
    """Bad input, refused before anything changed: `ExitCode.INVALID` (2)."""


class Failed(Exception):
    """The work was tried and failed: `ExitCode.FAILED` (1)."""


@contextlib.contextmanager
def classify(
    *,
    invalid: tuple[type[BaseException], ...] = (),
    failed: tuple[type[BaseException], ...] = (),
    aws: bool = False,
) -> Iterator[None]:
    """Raises `Refused` for the `invalid` exceptions and `Failed` for the `failed` ones.

    `invalid` is matched first, so a refusal may subclass a failure (`InvalidPromotion` is a
    `PromotionError`). Anything else is a bug of ferry's and keeps its traceback.

    Args:
        aws: the block calls AWS: no credentials is bad input, any other error of the AWS API
            or of reaching it a failure.
    """
    if aws:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        invalid = (*invalid, NoCredentialsError, PartialCredentialsError)
        failed = (*failed, ClientError, BotoCoreError)
    try:
        yield
    except invalid as exc:
        raise Refused(_text(exc)) from None
    except failed as exc:
        raise Failed(_text(exc)) from None


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


Handler = Callable[[argparse.Namespace], ExitCode]


@dataclass(frozen=True)
class Leaf:
    """A runnable command: its function, and its name for messages (`ferry release deploy`)."""

    prog: str
    handler: Handler

    def __call__(self, args: argparse.Namespace) -> int:
        try:
            return int(self.handler(args))
        except Refused as exc:
            return self._say(exc, ExitCode.INVALID)
        except Failed as exc:
            return self._say(exc, ExitCode.FAILED)

    def _say(self, exc: Exception, code: ExitCode) -> int:
        print(f"{self.prog}: {exc}", file=sys.stderr)
        return int(code)


def group(sub: Any, name: str, help_text: str, description: str | None = None) -> Any:
    """`ferry <name>`, a group of verbs; returns what `leaf` adds them to."""
    parser = sub.add_parser(name, help=help_text, description=description or help_text)
    return parser.add_subparsers(dest=f"{name}_verb", metavar="COMMAND", required=True)


def leaf(
    verbs: Any, name: str, handler: Handler, help_text: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A verb of a group: `help_text` is its line in the group's help."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        name, help=help_text, description=description or help_text
    )
    parser.set_defaults(leaf=Leaf(parser.prog, handler))
    return parser


def aws_client(service: Literal["ecr", "cloudformation"]) -> Any:
    """A boto3 client (AWS_ENDPOINT_URL reaches moto in tests); no region is bad input."""
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client(service)
    except NoRegionError:
        raise Refused("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)") from None


def prefect_api_url(what: str) -> str:
    """The Prefect API in PREFECT_API_URL (or the active profile); without one, Prefect would
    quietly use a throwaway in-process server, so that is bad input."""
    from flows.prefect import api as prefect_api

    url = prefect_api.configured_url()
    if not url:
        raise Refused(f"set PREFECT_API_URL to the Prefect API {what}")
    return url
