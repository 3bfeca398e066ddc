"""Each run's one event: its name decides which automation answers."""

import pytest

from flows.prefect.events import event_name
from flows.run.verdict import Outcome


@pytest.mark.parametrize(
    ("outcome", "command", "name"),
    [
        (Outcome.SUCCESS, "build", "ferry.dbt.run.succeeded"),
        (Outcome.WARNINGS, "build", "ferry.dbt.run.warned"),
        (Outcome.FAILED, "run", "ferry.dbt.run.failed"),
        (Outcome.INVALID, "build", "ferry.dbt.run.invalid"),
        (Outcome.SUCCESS, "source freshness", "ferry.dbt.run.succeeded"),
        (Outcome.WARNINGS, "source freshness", "ferry.dbt.freshness.warned"),
        (Outcome.FAILED, "source freshness", "ferry.dbt.freshness.failed"),
    ],
)
def test_event_names(outcome, command, name):
    assert event_name(outcome, command) == name
