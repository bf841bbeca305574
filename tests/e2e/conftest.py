"""End-to-end fixtures: a real kernel (journal, scheduler, executor, tools, sandbox) whose
only fake is the engine, scripted to answer like the model would."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.shell.runner import Runner
from llmos.shell.store import ShellStore
from llmos.tools.registry import default_registry


def model_script(plan: dict | str, code: str = "print('hi')\n") -> Callable:
    """The fake model: the plan for constrained (planner) calls, ``code`` for free-text ones."""
    text = plan if isinstance(plan, str) else json.dumps(plan)

    def answer(req) -> str:
        return text if req.json_schema is not None else f"```python\n{code}```"
    return answer


@pytest.fixture
async def shell(config, tmp_path):
    """``await shell(plan, **runner_kwargs)`` -> (runner, engine); everything is closed after."""
    made: list = []

    async def make(plan: dict | str, *, code: str = "print('hi')\n", **kw) -> tuple[Runner, FakeEngine]:
        engine = FakeEngine(model_script(plan, code))
        kernel = await Kernel.boot(config, engines={"fake": engine}, tools=default_registry())
        store = ShellStore(config.home / "shell.db")
        made.append((kernel, store))
        return Runner(kernel, store=store, user="tester", **kw), engine

    yield make
    for kernel, store in made:
        await kernel.shutdown()
        store.close()
