"""Test-only start-up hook for ``tests/cli/test_boot.py`` (on PYTHONPATH only there).

A daemon process started with ``LLMOS_TEST_FAKE_PLAN`` in its environment boots its
kernel on a FakeEngine that answers that text to every generation, and on a FakeHAL,
so ``llmos boot`` can be tested end to end as a real process tree without a model.
"""

import os

_PLAN = os.environ.get("LLMOS_TEST_FAKE_PLAN")

if _PLAN:
    import llmos.api.app as _app
    from llmos.hal.fake import FakeHAL
    from llmos.llm.fake import FakeEngine

    _real_boot = _app._boot_kernel

    async def _boot_kernel(config, **kw):
        kw["engines"] = {"fake": FakeEngine(_PLAN, model="fake")}
        kw["hal"] = FakeHAL()
        return await _real_boot(config, **kw)

    _app._boot_kernel = _boot_kernel
