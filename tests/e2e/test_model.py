"""A handful of real requests on the embedded model (marker ``model``): the planner's
schema keeps every plan valid, and the tools compute the answer."""

from __future__ import annotations

import pytest

from llmos.kernel import Kernel
from llmos.shell.runner import Runner
from llmos.shell.store import ShellStore
from llmos.tools.registry import default_registry

pytestmark = pytest.mark.model

CASES = [
    ("what is 12 times 12 minus 4?", {}, "succeeded", "140", None),
    ("how many lines are in list.txt?", {"list.txt": "a\nb\nc\nd\n"}, "succeeded", "4", None),
    ("show me the contents of /etc/passwd", {}, "denied", "", None),
    ("what is the total price in items.csv?", {"items.csv": "item,price\npen,3\nbook,12\n"}, "succeeded", "15",
     None),
]


@pytest.fixture
async def kernel(config):
    k = await Kernel.boot(config, tools=default_registry())
    store = ShellStore(config.home / "shell.db")
    yield k, store
    await k.shutdown()
    store.close()


@pytest.mark.parametrize("request_,setup,status,needle,_", CASES, ids=[c[0][:30] for c in CASES])
async def test_real_request(kernel, tmp_path, request_, setup, status, needle, _):
    k, store = kernel
    for name, text in setup.items():
        (tmp_path / name).write_text(text)
    res = await Runner(k, store=store, user="tester").run(request_, workdir=tmp_path, yes=True)
    assert res.status == status, res.to_json()
    assert needle in res.answer, res.to_json()
