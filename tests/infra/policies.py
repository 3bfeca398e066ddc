"""Reading IAM statements out of synthesized roles."""

from __future__ import annotations

from typing import Any


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a role's inline policies."""
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def actions_of(role: dict[str, Any]) -> set[str]:
    result: set[str] = set()
    for statement in statements(role):
        action = statement["Action"]
        result.update([action] if isinstance(action, str) else action)
    return result


def statement(role: dict[str, Any], sid: str) -> dict[str, Any]:
    found = [s for s in statements(role) if s.get("Sid") == sid]
    assert len(found) == 1, f"no single statement {sid}: {statements(role)}"
    return found[0]
