"""Runs over HTTP: a plain-language request is planned, waits for a yes, then runs."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmos.runs import RunStatus, StepStatus

DELETE_PLAN = json.dumps({"steps": [{"tool": "files.delete", "args": {"path": "old.txt"},
                                     "why": "remove the old file"}], "answer": "Deleted old.txt."})


@pytest.fixture
def script():
    return DELETE_PLAN


@pytest.fixture
def ws(tmp_path):
    d = tmp_path / "ws"
    d.mkdir()
    (d / "old.txt").write_text("bye")
    return d


async def wait_status(c, rid, until, timeout=10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        run = (await c.get(f"/api/v1/runs/{rid}")).json()
        if run["status"] in until or loop.time() > end:
            return run
        await asyncio.sleep(0.02)


async def test_confirm_a_pending_step(api, ws):
    c = api.client
    r = await c.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws)})
    assert r.status_code == 202
    rid = r.json()["id"]
    run = await wait_status(c, rid, ("pending",))
    assert run["status"] == "pending"
    assert run["pending"]["tool"] == "files.delete" and run["pending"]["risk"] == "destructive"
    assert (ws / "old.txt").exists()                      # nothing ran before the yes
    plan = (await c.get(f"/api/v1/runs/{rid}/plan")).json()
    assert [s["tool"] for s in plan["plan"]] == ["files.delete"]
    r = await c.post(f"/api/v1/runs/{rid}/confirm", json={"step": 2})
    assert r.status_code == 409 and r.json()["field"] == "step"
    r = await c.post(f"/api/v1/runs/{rid}/confirm", json={"step": 1})
    assert r.status_code == 200 and r.json()["status"] == "running"
    run = await wait_status(c, rid, ("succeeded", "failed", "denied"))
    assert run["status"] == "succeeded", run
    assert not (ws / "old.txt").exists()
    assert "Deleted" in run["answer"] and run["explanation"] and run["shell_run"]
    r = await c.post(f"/api/v1/runs/{rid}/confirm", json={})
    assert r.status_code == 409 and r.json()["error"] == "no_pending_step"
    # the shell's record id finds the same run
    assert (await c.get(f"/api/v1/runs/{run['shell_run']}")).json()["id"] == rid
    assert rid in [x["id"] for x in (await c.get("/api/v1/runs")).json()["runs"]]


async def test_reject_changes_nothing(api, ws):
    c = api.client
    rid = (await c.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws)})).json()["id"]
    await wait_status(c, rid, ("pending",))
    r = await c.post(f"/api/v1/runs/{rid}/reject", json={"reason": "keep it"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    run = await wait_status(c, rid, ("rejected", "needs_confirmation", "failed"))
    await asyncio.sleep(0.1)
    run = (await c.get(f"/api/v1/runs/{rid}")).json()
    assert run["status"] == "rejected" and run["pending"] is None
    assert (ws / "old.txt").read_text() == "bye"


async def test_yes_up_front_and_dry_run(api, ws):
    c = api.client
    rid = (await c.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws),
                                              "dry_run": True})).json()["id"]
    run = await wait_status(c, rid, ("planned", "failed"))
    assert run["status"] == "planned" and (ws / "old.txt").exists()
    rid = (await c.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws),
                                              "yes": True})).json()["id"]
    run = await wait_status(c, rid, ("succeeded", "failed", "denied"))
    assert run["status"] == "succeeded" and not (ws / "old.txt").exists()


async def test_runs_are_private_to_their_owner(api, ws):
    c = api.client
    rid = (await c.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws),
                                              "dry_run": True})).json()["id"]
    tok = (await c.post("/api/v1/agents", json={"name": "eve", "capabilities": {
        "syscalls": ["agent.*", "proc.*", "llm.generate", "tool.*"], "write_roots": [str(ws)]}})).json()["token"]
    async with api.as_agent(tok) as eve:
        assert (await eve.get(f"/api/v1/runs/{rid}")).status_code == 404
        assert (await eve.post(f"/api/v1/runs/{rid}/confirm", json={})).status_code == 404
        assert (await eve.get("/api/v1/runs")).json()["runs"] == []
        # a workspace outside the agent's write roots is refused before anything runs
        r = await eve.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": "/"})
        assert r.status_code == 403 and r.json()["error"] == "permission_denied"


async def test_bad_run_requests(api, tmp_path):
    c = api.client
    r = await c.post("/api/v1/runs", json={"request": ""})
    assert r.status_code == 422 and r.json()["field"] == "request"
    for blank in (" \n\t", "count\x00lines"):      # refused up front, not a failed run later
        r = await c.post("/api/v1/runs", json={"request": blank})
        assert r.status_code == 400 and r.json()["field"] == "request"
    assert (await c.get("/api/v1/runs")).json()["runs"] == []
    r = await c.post("/api/v1/runs", json={"request": "x", "workdir": str(tmp_path / "missing")})
    assert r.status_code == 400 and r.json()["field"] == "workdir"
    assert (await c.get("/api/v1/runs/rnope")).status_code == 404


def test_run_progress_streams_over_sse(daemon, ws):
    from llmos.sdk import Client

    with Client(daemon.url, token=daemon.token) as c:
        run = c.submit_run("delete old.txt", workdir=str(ws))
        seen = []
        for ev in c.run_events(run["id"]):
            seen.append(ev["type"])
            if ev["type"] == "run.pending":
                c.confirm(run["id"])
        assert seen[0] == "run.snapshot" and seen[-1] == "run.finished"
        assert "run.plan" in seen and "run.pending" in seen and "run.decided" in seen
        assert c.get_run(run["id"])["status"] == "succeeded"
        assert not (ws / "old.txt").exists()
        rec = c.run_record(run["id"])                      # the same run as a typed record
        assert rec.status is RunStatus.SUCCEEDED and rec.finished and rec.status.ok
        assert [(s.tool, s.status) for s in rec.steps] == [("files.delete", StepStatus.SUCCEEDED)]
        assert rec.to_dict()["steps"][0]["status"] == "succeeded"


async def test_cancel_stops_a_run_and_kills_its_process(api, ws):
    c = api.client
    rid = (await c.post("/api/v1/runs", json={"request": "delete old.txt", "workdir": str(ws)})).json()["id"]
    await wait_status(c, rid, ("pending",))
    r = await c.post(f"/api/v1/runs/{rid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (ws / "old.txt").read_text() == "bye"              # the pending step never ran
    procs = (await api.svc.kernel.syscall("root", "proc.list", {"state": "killed"})).value
    rows = procs["processes"] if isinstance(procs, dict) else procs
    assert any(p["kind"] == "run" for p in rows), rows
    r = await c.post(f"/api/v1/runs/{rid}/cancel")
    assert r.status_code == 409 and r.json()["error"] == "run_finished"
    assert (await c.post("/api/v1/runs/nope/cancel")).status_code == 404
