"""scipy stays off the boot path: a booted kernel has not imported it; a solve does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

BOOT = textwrap.dedent("""
    import asyncio, sys
    from llmos.clock import FakeClock
    from llmos.config import load_config
    from llmos.hal.fake import FakeHAL
    from llmos.kernel import Kernel
    from llmos.llm.fake import FakeEngine

    async def main():
        clock = FakeClock()
        k = await Kernel.boot(load_config(), engines={"fake": FakeEngine()}, clock=clock, hal=FakeHAL(clock))
        print("scipy" in sys.modules, "llmos.alloc.solve" in sys.modules)
        await k.shutdown(grace_s=0.5)

    asyncio.run(main())
    from llmos.alloc.solve import solve
    print("scipy" in sys.modules)
""")


def test_booting_the_kernel_does_not_import_scipy(tmp_path):
    env = {**os.environ, "LLMOS_HOME": str(tmp_path / "home"), "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", BOOT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[:2] == ["False", "False"], out.stdout      # booted: no scipy, no solver module
    assert lines[2] == "True"                              # the solver brings it when asked
