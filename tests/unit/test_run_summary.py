"""The verdict (the sentence that becomes the flow's state message and the alert's headline)
and the summary that carries it."""

from datetime import UTC, datetime

from flows.dbt.docs import Documented
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.exit_codes import ExitCode
from flows.run.blue_green import PublishReport
from flows.run.request import RunRequest
from flows.run.summary import RunSummary, markdown_report, summarize
from flows.run.verdict import Outcome, Refusal, TimeLimit, judge, with_publication

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def node(uid, status, message=None, failures=None, rtype=None, secs=1.0):
    return NodeResult(
        unique_id=uid,
        resource_type=rtype or uid.split(".")[0],
        name=uid.split(".")[-1],
        status=NodeStatus(status),
        message=message,
        started_at=T0,
        finished_at=T0,
        execution_time=secs,
        failures=failures,
    )


def judged(request, nodes, dbt_ok, error, **kwargs):
    verdict = judge(request, nodes, dbt_ok=dbt_ok, error=error, **kwargs)
    return verdict.outcome, verdict.sentence


DB_ERROR = (
    "Database Error in model fct_orders (models/marts/fct_orders.sql)\n"
    '  relation "shop.stg_orders" does not exist\n  compiled code at target/x.sql'
)


def test_a_failed_run_names_each_failed_node_with_its_first_error_line():
    nodes = [
        node("model.shop.fct_orders", "error", DB_ERROR),
        node("test.shop.unique_orders_order_id", "fail", "Got 1 result", failures=1),
        node("model.shop.dim_customers", "skipped"),
        node("model.shop.stg_orders", "success", "OK"),
    ]
    outcome, verdict = judged(RunRequest.build(), nodes, False, None)
    assert outcome is Outcome.FAILED and outcome.exit_code == ExitCode.FAILED
    assert verdict == (
        "2 of 4 nodes failed: model.shop.fct_orders (Database Error: relation "
        '"shop.stg_orders" does not exist); test.shop.unique_orders_order_id (1 failure); '
        "1 skipped"
    )


def test_warnings_pass_but_are_named():
    nodes = [node("model.shop.a", "success"), node("test.shop.t", "warn", "Got 3", failures=3)]
    outcome, verdict = judged(RunRequest.build(), nodes, True, None)
    assert outcome is Outcome.WARNINGS and outcome.exit_code == ExitCode.OK
    assert verdict == "2 of 2 nodes passed, 1 with warnings: test.shop.t (3 failures)"


def test_a_dbt_error_before_any_node_is_a_failure_with_the_reason():
    outcome, verdict = judged(RunRequest.build(), [], False, "Compilation Error in model x")
    assert outcome is Outcome.FAILED
    assert verdict == "dbt build failed: Compilation Error in model x"


def test_long_failure_lists_are_cut_with_a_count():
    nodes = [node(f"model.shop.m{i}", "error", "boom") for i in range(8)]
    _, verdict = judged(RunRequest.build(), nodes, False, None)
    assert verdict.startswith("8 of 8 nodes failed: model.shop.m0 (boom)")
    assert verdict.endswith("; and 3 more")


def test_a_retry_with_nothing_left_is_a_success():
    outcome, verdict = judged(RunRequest.build(command="retry"), [], True, None)
    assert outcome is Outcome.SUCCESS and "ran no nodes" in verdict


def test_summary_counts_and_report_rows():
    nodes = [node("model.shop.a", "success", secs=3), node("model.shop.b", "error", "bad | pipe")]
    verdict = judge(RunRequest.build(), nodes, dbt_ok=False, error=None)
    summary = summarize(
        run_id="r1",
        flow_run_id=None,
        project="shop",
        env="local",
        request=RunRequest.build(),
        target="duckdb",
        nodes=nodes,
        verdict=verdict,
        started_at=T0,
        finished_at=T0,
    )
    assert summary.counts == {"error": 1, "success": 1}
    assert [f.unique_id for f in summary.failed] == ["model.shop.b"]
    assert summary.slowest[0].unique_id == "model.shop.a"
    report = markdown_report(summary, nodes)
    rows = [line for line in report.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `model.shop.b` | model | error |")  # failures first
    assert "bad \\| pipe" in rows[0]

    assert summary.request == RunRequest.build()  # embedded as it ran, typed


def test_transient_retries_are_said_after_the_verdict():
    nodes = [node("model.shop.a", "success")]
    _, verdict = judged(RunRequest.build(), nodes, True, None, attempts=2)
    assert verdict == "1 of 1 nodes passed (after 2 attempts: transient failures were retried)"


def test_a_run_past_its_limit_says_where_the_limit_fired_then_what_dbt_did():
    nodes = [node("model.shop.a", "success"), node("model.shop.b", "error", "cancelled")]
    limit = TimeLimit(limit_s=15, fired_in="dbt build")
    verdict = judge(RunRequest.build(), nodes, dbt_ok=False, error=None, time_limit=limit)
    assert verdict.outcome is Outcome.FAILED and verdict.timed_out
    assert verdict.sentence.startswith(
        "timed out after 15 s (FERRY_FLOW_TIMEOUT_S) during dbt build; dbt cancelled its "
        "queries after 2 node(s) finished; 1 of 2 nodes failed: model.shop.b (cancelled)"
    )
    quiet = judge(
        RunRequest.build(), [], dbt_ok=False, error=None, time_limit=TimeLimit(5, "dbt parse")
    )
    assert quiet.sentence == "timed out after 5 s (FERRY_FLOW_TIMEOUT_S) during dbt parse"


def test_a_refusal_is_a_verdict_with_exit_code_2():
    refusal = Refusal.of_input("selection 'x' matches no node")
    assert refusal.verdict == "Invalid input: selection 'x' matches no node"
    assert refusal.exit_code == ExitCode.INVALID and refusal.outcome is Outcome.INVALID


def test_root_causes_come_before_the_tests_that_failed_around_them():
    nodes = [
        node("test.shop.t", "fail", "Got 1", failures=1, secs=9),
        node("model.shop.m", "error", "boom", secs=1),
    ]
    _, verdict = judged(RunRequest.build(), nodes, False, None)
    assert verdict == "2 of 2 nodes failed: model.shop.m (boom); test.shop.t (1 failure)"


DOCUMENTED = Documented(nodes={"model": 16, "seed": 2, "snapshot": 1, "source": 6}, relations=24)


def test_docs_generate_says_what_it_documented_not_that_it_ran_no_nodes():
    docs = RunRequest.build(command="docs generate")
    outcome, verdict = judged(docs, [], True, None, documented=DOCUMENTED)
    assert outcome is Outcome.SUCCESS
    assert verdict == (
        "dbt docs generate documented 25 nodes (16 models, 2 seeds, 1 snapshot, 6 sources); "
        "the catalog has 24 relations from the warehouse"
    )
    one = Documented(nodes={"model": 1}, relations=1)
    assert (
        one.describe()
        == "documented 1 node (1 model); the catalog has 1 relation from the warehouse"
    )


def test_docs_generate_that_failed_is_a_failure_whatever_it_documented():
    docs = RunRequest.build(command="docs generate")
    outcome, verdict = judged(docs, [], False, "Runtime Error: catalog", documented=DOCUMENTED)
    assert outcome is Outcome.FAILED
    assert verdict == "dbt docs generate failed: Runtime Error: catalog"


def _summary(**extra):
    request = RunRequest.build(command="docs generate")
    return summarize(
        run_id="r1",
        flow_run_id=None,
        project="shop",
        env="prod",
        request=request,
        target="duckdb",
        nodes=[],
        verdict=judge(request, [], dbt_ok=True, error=None, documented=DOCUMENTED),
        started_at=T0,
        finished_at=T0,
        **extra,
    )


def test_the_markdown_report_links_to_the_environments_docs_site():
    on_s3 = markdown_report(_summary(docs="s3://arts/dbt/shop/prod/docs/index.html"), [])
    assert (
        "- docs site: [s3://arts/dbt/shop/prod/docs/index.html](https://s3.console.aws.amazon."
        "com/s3/object/arts?prefix=dbt/shop/prod/docs/index.html)"
    ) in on_s3.splitlines()
    assert "**dbt docs generate documented 25 nodes" in on_s3
    local = markdown_report(_summary(docs="/srv/ferry/shop/prod/docs/index.html"), [])
    assert "- docs site: `/srv/ferry/shop/prod/docs/index.html`" in local.splitlines()
    assert "docs site" not in markdown_report(_summary(), [])


def test_what_a_docs_run_documented_is_written_typed_and_read_back_typed():
    summary = _summary(documented=DOCUMENTED, docs="s3://arts/dbt/shop/prod/docs/index.html")
    again = RunSummary.model_validate_json(summary.model_dump_json())
    assert again.documented == DOCUMENTED and again.documented.nodes_total == 25
    assert again == summary


BLUE_GREEN = RunRequest.build(publish="blue-green")


def test_a_blue_green_run_that_passed_says_what_consumers_read_now():
    nodes = [node("model.shop.a", "success"), node("test.shop.t", "warn", "Got 3", failures=3)]
    verdict = judge(BLUE_GREEN, nodes, dbt_ok=True, error=None)
    report = PublishReport(version="r1a2b3c", published=True, relations=["main.a", "main.b"])
    published = with_publication(verdict, report)
    assert published.outcome is Outcome.WARNINGS  # the run's own outcome stands
    assert published.sentence == (
        "2 of 2 nodes passed, 1 with warnings: test.shop.t (3 failures); "
        "published r1a2b3c: 2 relation(s) switched at once"
    )


def test_a_run_that_passed_but_was_not_published_has_failed():
    verdict = judge(BLUE_GREEN, [node("model.shop.a", "success")], dbt_ok=True, error=None)
    report = PublishReport(version="r1a2b3c", error="canceling statement due to lock timeout")
    published = with_publication(verdict, report)
    assert published.outcome is Outcome.FAILED and published.outcome.exit_code == ExitCode.FAILED
    assert published.sentence == (
        "1 of 1 nodes passed; built and tested r1a2b3c but not published (canceling statement "
        "due to lock timeout): consumers read what they read before"
    )


def test_a_failed_blue_green_run_says_nothing_was_published():
    nodes = [node("model.shop.a", "success"), node("test.shop.t", "fail", "Got 1", failures=1)]
    verdict = judge(BLUE_GREEN, nodes, dbt_ok=False, error=None)
    published = with_publication(verdict, PublishReport(version="r1a2b3c"))
    assert published.outcome is Outcome.FAILED
    assert published.sentence == (
        "1 of 2 nodes failed: test.shop.t (1 failure); "
        "nothing published: consumers read what they read before (r1a2b3c kept)"
    )


def test_a_blue_green_run_past_its_limit_stays_timed_out():
    limit = TimeLimit(limit_s=15, fired_in="dbt build")
    verdict = judge(BLUE_GREEN, [], dbt_ok=False, error=None, time_limit=limit)
    published = with_publication(verdict, PublishReport(version="r1a2b3c"))
    assert published.timed_out and published.outcome is Outcome.FAILED
    assert published.sentence.endswith(
        "; nothing published: consumers read what they read before (r1a2b3c kept)"
    )
