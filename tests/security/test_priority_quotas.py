"""Issue 12, item 13: urgency is a right, quotas are shared down the tree, and the solver is a syscall.

- A priority below 0 (at spawn, or by ``proc.nice``) needs the ``may.urgent`` capability,
  as a negative nice needs root in Unix.
- Agents an agent creates share its quotas: a parent with ``max_procs=2`` and two
  children cannot run more than two live processes between them.
- ``POST /api/v1/alloc`` is the ``alloc.solve`` syscall: an agent without it is refused,
  and the solver's time budget is bounded by the kernel.
"""

from __future__ import annotations

import httpx
import pytest

from llmos.api.app import create_app, lifespan_services
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


@pytest.fixture
async def kernel(config, clock):
    k = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=default_registry(), clock=clock,
                          hal=FakeHAL(clock), run_loop=False)
    yield k
    await k.shutdown(grace_s=0.5)


async def _agent(k, name, creator="root", **caps):
    res = await k.syscall(creator, "agent.create", {"name": name, "capabilities": caps})
    assert res.ok, res.error
    return name


RUN = {"kind": "run", "spec": {"title": "t"}}


async def test_negative_priority_needs_the_urgent_capability(kernel):
    await _agent(kernel, "plain", syscalls=["proc.*"])
    res = await kernel.syscall("plain", "proc.spawn", {**RUN, "priority": -20})
    assert not res.ok and res.error.code == "permission_denied" and "may.urgent" in res.error.message
    res = await kernel.syscall("plain", "proc.spawn", {**RUN, "priority": 5})
    assert res.ok, res.error
    pid = res.value["pid"]
    res = await kernel.syscall("plain", "proc.nice", {"pid": pid, "priority": -5})
    assert not res.ok and "may.urgent" in res.error.message
    assert kernel.procs.get(pid).priority == 5
    assert (await kernel.syscall("plain", "proc.nice", {"pid": pid, "priority": 10})).ok
    await _agent(kernel, "urgent", syscalls=["proc.*", "may.urgent"])
    assert (await kernel.syscall("urgent", "proc.spawn", {**RUN, "priority": -20})).ok


async def test_children_share_the_parents_quota(kernel):
    await _agent(kernel, "parent", syscalls=["proc.*", "agent.create"], quotas={"max_procs": 2})
    for child in ("c1", "c2"):
        await _agent(kernel, child, creator="parent", syscalls=["proc.*"], quotas={"max_procs": 2})
    assert (await kernel.syscall("c1", "proc.spawn", RUN)).ok
    assert (await kernel.syscall("c2", "proc.spawn", RUN)).ok
    res = await kernel.syscall("c2", "proc.spawn", RUN)
    assert not res.ok and res.error.code == "quota_exceeded" and "parent" in res.error.message
    res = await kernel.syscall("parent", "proc.spawn", RUN)
    assert not res.ok and res.error.code == "quota_exceeded"


async def test_the_solver_is_a_syscall_with_a_bounded_budget(config):
    app = create_app(config, engines={"fake": FakeEngine(model="fake")}, tools=default_registry(),
                     hal=FakeHAL(), preload_models=False)
    doc = {"tasks": [{"name": "T1", "cost": {"R1": 1, "R2": 2}}], "resources": [{"name": "R1"}, {"name": "R2"}],
           "objective": "cost"}
    async with lifespan_services(app) as svc:
        res = await svc.kernel.syscall("root", "agent.create", {"name": "noalloc", "capabilities": {
            "syscalls": ["proc.*"]}})
        token = res.value["token"]
        t = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=t, base_url="http://localhost",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            r = await c.post("/api/v1/alloc", json=doc)
        assert r.status_code == 403 and "alloc.solve" in r.json()["message"]
        res = await svc.kernel.syscall("root", "alloc.solve", {"problem": doc, "time_limit_s": 3600})
        assert not res.ok and res.error.code == "invalid_argument" and res.error.field == "time_limit_s"
        res = await svc.kernel.syscall("root", "alloc.solve", {"problem": doc, "time_limit_s": 1})
        assert res.ok, res.error
        assert res.value["assignment"] == {"T1": "R1"}
