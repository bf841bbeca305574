from __future__ import annotations

import pytest

from llmos.errors import InvalidArgument, NotFound
from llmos.kernel.process import TRANSITIONS, Process, ProcessTable, ProcState
from llmos.kernel.storage import Journal

S = ProcState


def test_states_are_ordered_and_finished_is_derived():
    assert list(S) == sorted(S)
    assert [s.name for s in S] == ["NEW", "QUEUED", "RUNNING", "WAITING", "PREEMPTED",
                                   "SUCCEEDED", "FAILED", "KILLED"]
    assert [s for s in S if s.finished] == [S.SUCCEEDED, S.FAILED, S.KILLED]
    assert all(not TRANSITIONS[s] for s in S if s.finished)
    assert all(S.KILLED in TRANSITIONS[s] and S.FAILED in TRANSITIONS[s] for s in S if not s.finished)


def test_parse_names_and_rejects_unknown():
    assert S.parse("running") is S.RUNNING
    with pytest.raises(InvalidArgument, match="unknown process state"):
        S.parse("sleeping")


@pytest.fixture
def table(tmp_path):
    j = Journal(tmp_path / "j.db")
    t = [0.0]

    def now():
        t[0] += 1.0
        return t[0]
    yield ProcessTable(j, now), j
    j.close()


def test_transition_journals_row_and_history(table):
    procs, j = table
    p = procs.create(kind="tool", owner="a", spec={"tool": "x"}, priority=3)
    procs.transition(p, S.QUEUED, "admitted")
    procs.transition(p, S.RUNNING, "dispatched")
    procs.transition(p, S.SUCCEEDED, "done", result={"v": 1}, tokens_out=5)
    j.flush()
    row = Process.from_row(j.load_processes()[0])
    assert row.state == S.SUCCEEDED and row.result == {"v": 1} and row.tokens_out == 5
    assert row.attempts == 1 and row.started_s == 3.0 and row.finished_s == 4.0
    hist = j.query("SELECT from_state, to_state, reason FROM transitions WHERE pid = ? ORDER BY id", (p.pid,))
    assert hist == [(None, 0, "spawned"), (0, 1, "admitted"), (1, 2, "dispatched"), (2, 5, "done")]


def test_illegal_moves_are_refused(table):
    procs, _ = table
    p = procs.create(kind="llm", owner="a", spec={})
    procs.transition(p, S.KILLED, "killed")
    with pytest.raises(InvalidArgument, match="cannot go from killed to queued"):
        procs.transition(p, S.QUEUED, "again")
    q = procs.create(kind="llm", owner="a", spec={})
    with pytest.raises(InvalidArgument, match="not a mutable"):
        procs.transition(q, S.QUEUED, "x", owner="b")
    with pytest.raises(InvalidArgument, match="kind"):
        procs.create(kind="daemon", owner="a", spec={})


def test_counts_children_and_keys(table):
    procs, _ = table
    run = procs.create(kind="run", owner="a", spec={})
    step = procs.create(kind="tool", owner="a", spec={}, parent=run.pid, idem_key="k1")
    assert run.children == [step.pid]
    assert procs.by_key("a", "k1") is step and procs.by_key("b", "k1") is None
    assert procs.live_count("a") == 2 and procs.counts[S.NEW] == 2
    procs.transition(step, S.FAILED, "x")
    assert procs.live_count("a") == 1 and procs.counts[S.FAILED] == 1
    with pytest.raises(NotFound):
        procs.get(999)
    procs.transition(run, S.WAITING, "run")
    procs.transition(run, S.SUCCEEDED, "ok")
    with pytest.raises(InvalidArgument, match="already finished"):
        procs.create(kind="tool", owner="a", spec={}, parent=run.pid)


def test_load_rebuilds_links_counts_and_next_pid(table):
    procs, j = table
    run = procs.create(kind="run", owner="a", spec={})
    procs.create(kind="llm", owner="a", spec={"prompt": "x"}, parent=run.pid, idem_key="k")
    j.flush()
    fresh = ProcessTable(j, lambda: 0.0)
    fresh.load(Process.from_row(r) for r in j.load_processes())
    assert fresh.get(run.pid).children == [run.pid + 1]
    assert fresh.by_key("a", "k").pid == run.pid + 1
    assert fresh.live_count("a") == 2
    assert fresh.create(kind="llm", owner="a", spec={}).pid == run.pid + 2


def test_before_hooks_add_changes_to_the_journaled_move(table):
    procs, j = table
    seen = []

    def meter(p, to):
        seen.append((p.state, to))
        if p.state == S.RUNNING:
            return {"joules": (p.joules or 0) + 2.5, "joules_modelled": 1.0}
        return None

    procs.before_transition(meter)
    p = procs.create(kind="job", owner="a", spec={})
    procs.transition(p, S.QUEUED, "admitted")
    procs.transition(p, S.RUNNING, "dispatched", placed_on="gpu:0")
    procs.transition(p, S.SUCCEEDED, "done")
    j.flush()
    row = Process.from_row(j.load_processes()[0])
    assert (row.joules, row.joules_modelled, row.placed_on) == (2.5, 1.0, "gpu:0")
    assert row.joules_label == "mixed" and row.to_dict()["joules_label"] == "mixed"
    assert seen == [(S.NEW, S.QUEUED), (S.QUEUED, S.RUNNING), (S.RUNNING, S.SUCCEEDED)]


def test_energy_labels():
    from llmos.kernel.process import energy_label

    assert energy_label(None, None) is None and energy_label(0.0, 0.0) == "none"
    assert energy_label(5.0, 0.0) == "measured" and energy_label(5.0, 5.0) == "modelled"
    assert energy_label(5.0, 2.0) == "mixed"
