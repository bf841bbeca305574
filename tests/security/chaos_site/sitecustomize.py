"""Test-only start-up hook for the durability tests (on PYTHONPATH only there).

A daemon started with ``LLMOS_TEST_CHAOS`` in its environment boots its kernel on a
FakeHAL and a FakeEngine whose every plan appends two lines to ``effects.txt`` with a
non-idempotent tool (``chaos.append``): the line is the ``CHAOSKEY-...`` word of the
request plus ``:1`` / ``:2``, so each run's effects can be counted in the file. The
tool sleeps ``LLMOS_TEST_CHAOS`` seconds (a float) before it writes, so kills land
while steps are in flight.
"""

import os

_DELAY = os.environ.get("LLMOS_TEST_CHAOS")

if _DELAY:
    import json
    import re
    import time

    import llmos.api.app as _app
    from llmos.hal.fake import FakeHAL
    from llmos.llm.fake import FakeEngine
    from llmos.tools.registry import Tool, ToolResult
    from llmos.types import Risk

    _KEY = re.compile(r"CHAOSKEY-[A-Za-z0-9]+")

    def _plan(req) -> str:
        text = " ".join(str(m.get("content", "")) for m in (getattr(req, "messages", None) or [])
                        if isinstance(m, dict)) or str(getattr(req, "prompt", ""))
        keys = _KEY.findall(text)
        key = keys[-1] if keys else "CHAOSKEY-none"
        steps = [{"tool": "chaos.append", "args": {"path": "effects.txt", "line": f"{key}:{n}"},
                  "why": "record the effect"} for n in (1, 2)]
        return json.dumps({"steps": steps, "answer": "done"})

    def _append(ctx, args):
        time.sleep(float(_DELAY))
        p = ctx.resolve(args["path"], "w")
        with open(p, "a") as f:
            f.write(args["line"] + "\n")
            f.flush()
            os.fsync(f.fileno())
        return ToolResult(output={"appended": args["line"]}, summary="appended", files=[ctx.rel(p)])

    _schema = {"type": "object", "additionalProperties": False,
               "properties": {"path": {"type": "string", "maxLength": 200},
                              "line": {"type": "string", "maxLength": 200}},
               "required": ["path", "line"]}
    _TOOL = Tool(name="chaos.append", description="append a line to a file", parameters=_schema,
                 risk=Risk.WRITE, fn=_append, kind="files", idempotent=False, path_args={"path": "w"})

    _real_boot = _app._boot_kernel

    async def _boot_kernel(config, **kw):
        kw["engines"] = {"fake": FakeEngine(_plan, model="fake")}
        kw["hal"] = FakeHAL()
        tools = kw.get("tools")
        if tools is not None and "chaos.append" not in tools:
            tools.register(_TOOL)
        return await _real_boot(config, **kw)

    _app._boot_kernel = _boot_kernel
