"""The infrastructure's CloudFormation outputs as the `FERRY_*` variables prefect.yaml reads.

Output keys are CamelCase (`FerryEcsCluster`), prefect.yaml's placeholders UPPER_SNAKE
(`{{ $FERRY_ECS_CLUSTER }}`); the mapping is mechanical, so a new output needs no code here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class StackOutputError(RuntimeError):
    """A stack is missing or has no outputs ferry can use."""


class UnknownStack(StackOutputError):
    """A stack named does not exist, or is not ferry's (no `Ferry*` output): bad input (exit
    code 2), where other `StackOutputError`s (CloudFormation failing, an output that cannot be
    written) are failures (exit code 1)."""


def env_name(output_key: str) -> str:
    """The placeholder an output fills: `FerryPrivateSubnetA` -> `FERRY_PRIVATE_SUBNET_A`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", output_key).upper()


def stack_env(cloudformation: Any, stacks: Iterable[str]) -> dict[str, str]:
    """The `Ferry*` outputs of the stacks, later stacks overriding earlier ones.

    Raises:
        UnknownStack: a stack does not exist or has no `Ferry*` output.
        StackOutputError: CloudFormation refused to describe a stack.
    """
    env: dict[str, str] = {}
    for name in stacks:
        try:
            described = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except cloudformation.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            # CloudFormation's answer for a stack that is not there.
            if error.get("Code") == "ValidationError" and "does not exist" in str(
                error.get("Message")
            ):
                raise UnknownStack(f"stack {name!r} does not exist") from None
            raise StackOutputError(f"stack {name!r}: {exc}") from None
        outputs = [o for s in described for o in s.get("Outputs", [])]
        ours = {
            o["OutputKey"]: o["OutputValue"] for o in outputs if o["OutputKey"].startswith("Ferry")
        }
        if not ours:
            raise UnknownStack(
                f"stack {name!r} has no Ferry* outputs; is it ferry's infrastructure (infra/)?"
            )
        env.update({env_name(key): value for key, value in ours.items()})
    return env


def github_env_lines(env: dict[str, str]) -> str:
    """`NAME=value` lines for $GITHUB_ENV (values are single-line identifiers and ARNs)."""
    for name, value in env.items():
        if "\n" in value:
            raise StackOutputError(f"output {name} spans lines; it cannot go into GITHUB_ENV")
    return "".join(f"{name}={value}\n" for name, value in sorted(env.items()))
