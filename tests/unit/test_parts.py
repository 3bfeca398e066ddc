"""A selection split into parts that build independently, balanced by the nodes' usual times;
the parts' runs gathered back as one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flows.artifacts import index_key, open_store
from flows.dbt.nodes import NodeStatus
from flows.run.parts import UNKNOWN_S, Part, PartRun, gather, merged_run_results, split
from flows.run.verdict import Outcome, Verdict, with_lost_parts

# Three connected parts: a-b-c (c's test t_c too), d-e, and f alone.
EDGES = {
    "b": ["a"],
    "c": ["b"],
    "t_c": ["c"],
    "e": ["d"],
}
NODES = ["a", "b", "c", "t_c", "d", "e", "f"]


def inputs(node: str) -> list[str]:
    return EDGES.get(node, [])


def test_no_part_reads_another():
    parts = split(NODES, inputs, {}, most=3)
    assert [set(p.nodes) for p in parts] == [{"a", "b", "c", "t_c"}, {"d", "e"}, {"f"}]
    where = {n: p.index for p in parts for n in p.nodes}
    assert all(where[n] == where[r] for n in NODES for r in inputs(n))


def test_a_test_on_two_models_joins_their_parts():
    joined = {**EDGES, "rel_e_c": ["e", "c"]}
    parts = split([*NODES, "rel_e_c"], lambda n: joined.get(n, []), {}, most=4)
    assert [set(p.nodes) for p in parts] == [{"a", "b", "c", "t_c", "d", "e", "rel_e_c"}, {"f"}]


def test_parts_are_packed_by_expected_time_longest_first():
    usual = {"a": 1, "b": 1, "c": 1, "t_c": 1, "d": 5, "e": 5, "f": 3}
    parts = split(NODES, inputs, usual, most=2)
    assert parts == [
        Part(1, ("d", "e"), 10.0),
        Part(2, ("a", "b", "c", "t_c", "f"), 7.0),
    ]


def test_a_node_never_run_counts_as_the_median_of_the_others():
    parts = split(["x", "y", "z"], lambda n: [], {"x": 10.0, "y": 2.0}, most=3)
    assert {p.nodes: p.expected_s for p in parts} == {("x",): 10.0, ("y",): 2.0, ("z",): 6.0}
    assert split(["x"], lambda n: [], {}, most=2) == [Part(1, ("x",), UNKNOWN_S)]


def test_one_connected_selection_stays_one_part_whatever_n():
    chain = {"b": ["a"], "c": ["b"]}
    assert split(["a", "b", "c"], lambda n: chain.get(n, []), {}, most=8) == [
        Part(1, ("a", "b", "c"), 3.0)
    ]


def test_more_parts_than_wanted_are_never_made_and_nothing_is_lost():
    many = [f"n{i}" for i in range(20)]
    parts = split(many, lambda n: [], {}, most=4)
    assert len(parts) == 4
    assert sorted(n for p in parts for n in p.nodes) == sorted(many)
    assert {p.expected_s for p in parts} == {5.0}
    assert split([], inputs, {}, most=4) == []


def test_the_same_selection_gives_the_same_parts():
    usual = {"a": 2.0, "d": 2.0, "f": 2.0}
    assert split(NODES, inputs, usual, most=2) == split(NODES, inputs, usual, most=2)


# --- the parts' runs gathered as one -------------------------------------------------------


def _stored_part(store, run_id: str, results: list[dict]) -> None:
    prefix = f"p/e/runs/2026-12-07/{run_id}"
    store.put_bytes(index_key("p", "e", run_id), json.dumps({"prefix": prefix}).encode())
    store.put_bytes(f"{prefix}/run_results.json", json.dumps({"results": results}).encode())


def _result(unique_id: str, status: str) -> dict:
    when = {"started_at": "2026-12-07T08:00:00Z", "completed_at": "2026-12-07T08:00:02Z"}
    return {
        "unique_id": unique_id,
        "status": status,
        "message": None if status == "success" else "Database Error in model x\n  boom",
        "timing": [{"name": "execute", **when}],
        "execution_time": 2.0,
        "adapter_response": {"rows_affected": 7},
    }


def test_the_parts_runs_are_gathered_as_one_and_a_crashed_parts_nodes_as_not_run(tmp_path):
    store = open_store(str(tmp_path / "store"))
    first = Part(1, ("model.p.a", "model.p.b"), 4.0)
    second = Part(2, ("model.p.c", "test.p.t_c"), 2.0)
    _stored_part(store, "run-1", [_result("model.p.a", "success"), _result("model.p.b", "error")])
    runs = [
        PartRun(first, "run-1", "calm-owl", "Failed", "FAILED", "1 of 2 nodes failed"),
        PartRun(second, "run-2", "wild-fox", "Crashed", "CRASHED", "process killed"),
    ]
    gathered = gather(store, "p", "e", runs, {"model.p.a": "a"})
    by_id = {n.unique_id: n for n in gathered.nodes}
    assert by_id["model.p.a"].status is NodeStatus.SUCCESS and by_id["model.p.a"].name == "a"
    assert by_id["model.p.a"].rows == 7 and by_id["model.p.a"].execution_time == 2.0
    assert by_id["model.p.b"].failed
    said = "part 2 of 2 (flow run 'wild-fox') crashed: process killed"
    assert gathered.lost == [said]
    assert by_id["model.p.c"].status is NodeStatus.SKIPPED
    assert by_id["test.p.t_c"].message == f"not run: {said}"
    assert [(p.index, p.state, p.artifacts is not None) for p in gathered.parts] == [
        (1, "Failed", True),
        (2, "Crashed", False),
    ]
    document = merged_run_results(
        gathered, command="build", started_at=datetime(2026, 12, 7, tzinfo=UTC), elapsed_s=9.5
    )
    assert [r["unique_id"] for r in document["results"]] == [
        "model.p.a",
        "model.p.b",
        "model.p.c",
        "test.p.t_c",
    ]
    assert document["args"]["which"] == "build" and document["elapsed_time"] == 9.5
    # `retry` of the parent runs again every node that did not pass: b, and what the crash left
    assert {r["unique_id"] for r in document["results"] if r["status"] != "success"} == {
        "model.p.b",
        "model.p.c",
        "test.p.t_c",
    }


def test_a_verdict_names_the_parts_that_ended_without_one_first():
    verdict = Verdict(Outcome.SUCCESS, "2 of 2 nodes passed")
    lost = with_lost_parts(verdict, ["part 2 of 2 (flow run 'wild-fox') crashed: killed"])
    assert lost.outcome is Outcome.FAILED
    assert lost.sentence == "part 2 of 2 (flow run 'wild-fox') crashed: killed; 2 of 2 nodes passed"
    assert with_lost_parts(verdict, []) is verdict
