"""The natural-language shell: request -> plan -> confirm -> run -> answer -> feedback.

Map (one concept per module):
- ``context``   the planner's context block: today, the agent's rights, the file tree
                with sizes, each table's columns and first rows; names a request names.
- ``normalize`` generic normalizers: numbers, durations, dates and times a request
                states; names resolved to existing files and columns.
- ``schema``    the planner's one JSON schema, generated from the whole tool registry.
- ``plan``      Plan / Step / Guard data, ``$stepN.output`` references, ``each``, ``when``.
- ``llmtool``   the model as a tool (summarize, translate, classify, extract, answer, write).
- ``planner``   the model writes the plan (an ``llm.generate`` syscall under the schema);
                checks, one retry with the reason, revisions after steps ran.
- ``runner``    Runner: the entry point (agent, syscalls, cancel); the safety order.
- ``execution`` one run in progress: admit, re-check, run, revise, answer.
- ``render``    answer filling, plan listings, the ``explain`` report.
- ``store``     ``$LLMOS_HOME/shell.db``: runs, ratings, approved plans, habits.
- ``feedback``  ratings -> approved plans (few-shot examples), habits, measured costs.

    from llmos.shell import Runner, ShellStore
    result = await Runner(kernel, store=ShellStore(cfg.home / "shell.db")).run(
        "how many lines are in poem.txt?", workdir=".", yes=False)
    print(result.to_json())
"""

from __future__ import annotations

from llmos.shell.plan import Plan, Step
from llmos.shell.planner import PlanError, Planner, check_plan
from llmos.shell.runner import Runner, RunResult
from llmos.shell.store import ShellStore

__all__ = ["Plan", "Step", "Planner", "PlanError", "check_plan", "Runner", "RunResult", "ShellStore"]
