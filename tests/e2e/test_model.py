"""A handful of real requests on the planner tier this machine gets (marker ``model``):
the grammar keeps every plan valid, and the tools compute the answer. The tests share
one prefix cache directory, so only the first pays for the planner's fixed prompt."""

from __future__ import annotations

import pytest

from llmos.kernel import Kernel
from llmos.shell.runner import Runner, planner_model
from llmos.shell.store import ShellStore
from llmos.tools.registry import default_registry

pytestmark = pytest.mark.model

CASES = [
    ("what is 12 times 12 minus 4?", {}, "succeeded", "140", None),
    ("how many lines are in list.txt?", {"list.txt": "a\nb\nc\nd\n"}, "succeeded", "4", None),
    ("show me the contents of /etc/passwd", {}, ("denied", "failed"), "", None),
    ("what is the total price in items.csv?", {"items.csv": "item,price\npen,3\nbook,12\n"}, "succeeded", "15",
     None),
]


@pytest.fixture(scope="module")
def kv_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("kv-prefix-shared")


@pytest.fixture
async def kernel(config, kv_cache):
    (config.home / "cache").mkdir(parents=True, exist_ok=True)
    (config.home / "cache" / "kv-prefix").symlink_to(kv_cache)
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
    model, _why = planner_model(k)
    res = await Runner(k, store=store, user="tester", model=model).run(request_, workdir=tmp_path, yes=True)
    assert res.status in ((status,) if isinstance(status, str) else status), res.to_json()
    assert needle in res.answer, res.to_json()
