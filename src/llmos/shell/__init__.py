"""The natural-language shell: request -> plan -> confirm -> run -> answer -> feedback.

Map (one concept per module):
- ``extract``   deterministic pre-pass: workspace files, named paths, patterns, quoted
                text, arithmetic, durations, CSV columns.
- ``examples``  the curated example library (``examples/*.json``) and BM25 retrieval.
- ``schema``    the planner's JSON schemas, generated from the tool registry.
- ``plan``      Plan / Step data, ``$stepN.output`` references, the DAG.
- ``planner``   the model call (an ``llm.generate`` syscall) under the schema; checks.
- ``runner``    Runner: risks, confirmation, steps as ``tool.call`` syscalls, answer.
- ``render``    answer filling, plan listings, the ``explain`` report.
- ``store``     ``$LLMOS_HOME/shell.db``: runs, ratings, approved plans, habits.
- ``feedback``  ratings -> examples, habits, measured costs -> kernel estimates.

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
