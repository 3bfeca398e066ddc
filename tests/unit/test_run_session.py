"""A run's session: made by its starter, passed down, read back - never found."""

import io
import json
from datetime import UTC, datetime

from flows.exit_codes import ExitCode
from flows.run.session import Output, RunSession
from flows.run.summary import AD_HOC, RunSummary
from flows.run.verdict import Refusal, RefusedRun
from flows.settings import FerrySettings
from tests.stored_runs import stored_run

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def passed() -> RunSummary:
    return stored_run(
        started_at=T0, verdict="62 of 62 nodes passed", artifacts="s3://arts/shop/prod/runs/r1"
    )


class Armed:
    """An ending that records what it was armed with (the real one ends the process)."""

    def __init__(self) -> None:
        self.sessions: list[RunSession] = []

    def arm(self, session: RunSession) -> None:
        self.sessions.append(session)


def test_two_sessions_in_one_process_never_see_each_others_settings_or_outcome():
    first = RunSession(FerrySettings.from_env(env="staging"))
    second = RunSession(FerrySettings.from_env(env="prod"), deployment="build-prod")
    first.finish(Refusal.of_input("selection 'x' matches no node"))
    assert second.outcome is None and second.exit_code == ExitCode.FAILED  # no verdict yet
    second.finish(passed())
    assert (first.settings.run.env, first.exit_code) == ("staging", ExitCode.INVALID)
    assert (second.settings.run.env, second.exit_code) == ("prod", ExitCode.OK)
    assert (first.deployment, second.deployment) == (AD_HOC, "build-prod")


def test_finishing_arms_the_processs_end_with_the_session_that_knows_the_outcome():
    ending = Armed()
    session = RunSession(FerrySettings.from_env(), ending=ending)
    summary = passed()
    session.finish(summary)
    assert ending.sessions == [session] and session.outcome is summary


def test_the_outcome_is_told_once_whoever_tells_it_first():
    out, err = io.StringIO(), io.StringIO()
    session = RunSession(FerrySettings.from_env(), output=Output(stream=out, errors=err))
    session.finish(passed())
    assert session.tell() == ExitCode.OK  # the process's end, say
    assert session.tell() == ExitCode.OK  # then its maker: nothing is said twice
    assert out.getvalue().splitlines() == [
        "ferry: success: 62 of 62 nodes passed",
        "ferry: artifacts: s3://arts/shop/prod/runs/r1",
    ]
    assert err.getvalue() == ""


def test_a_refusal_is_told_on_stderr_and_as_json_with_its_flow_run():
    out, err = io.StringIO(), io.StringIO()
    refusal = Refusal.of_settings("FERRY_ENV='Prod' must be lowercase", flow_run_id="fr-1")
    assert refusal.message == "Invalid setting: FERRY_ENV='Prod' must be lowercase"
    assert Output(as_json=True, stream=out, errors=err).tell(refusal) == ExitCode.INVALID
    assert err.getvalue() == f"ferry: {refusal.message}\n"
    assert json.loads(out.getvalue()) == {
        "outcome": "invalid",
        "verdict": refusal.message,
        "flow_run_id": "fr-1",
    }
    assert RefusedRun.model_validate_json(out.getvalue()) == refusal.record()  # as CI reads it


def test_a_summary_told_as_json_reads_back_as_the_stored_run():
    out = io.StringIO()
    summary = passed()
    Output(as_json=True, stream=out).tell(summary)
    assert RunSummary.read(out.getvalue()) == summary
