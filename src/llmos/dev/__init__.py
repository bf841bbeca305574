"""The software-development agent: ``llmos dev --repo DIR "REQUEST"``.

Map:
- ``repo``: the repository read once (files, test command), its scratch copy, diffs.
- ``edits``: the model's reply parsed into edits, checked, applied all or nothing.
- ``prompt``: what the model is shown on each try.
- ``session``: the run's agent in the kernel (``llm.generate`` and sandboxed test runs
  as its syscalls), in this process or in the daemon.
- ``agent``: the loop (test, ask, apply, test again; bounded tries) and ``apply_to_repo``.

The repository is never written except by ``apply_to_repo``, which the CLI calls only
after the person's yes (or ``--yes`` with passing tests).
"""

from llmos.dev.agent import TRIES_DEFAULT, TRIES_MAX, DevAgent, DevResult, Outcome, Try, apply_to_repo
from llmos.dev.edits import Edit, EditRejected
from llmos.dev.repo import Repo, detect_tests, open_repo, scratch_copy
from llmos.dev.session import DevSession, TestRun, open_daemon, open_local

__all__ = ["DevAgent", "DevResult", "Outcome", "Try", "apply_to_repo", "TRIES_DEFAULT", "TRIES_MAX",
           "Edit", "EditRejected", "Repo", "open_repo", "detect_tests", "scratch_copy",
           "DevSession", "TestRun", "open_local", "open_daemon"]
