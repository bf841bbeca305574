"""The development loop: read the repository, ask for edits, test, read failures, edit again.

Map:
- ``Outcome``: ordered: PASSED < FAILED < NO_CHANGE (finished states of one run).
- ``Try``: one model call: what happened to its reply (applied or rejected, and why; or
  no reply within the model timeout), the files it changed, the tests' result after it, seconds.
- ``DevResult``: the outcome, the tries, the final diff (unified, repository vs scratch
  copy), the changed files with their new text, the tests' last output, seconds.
- ``DevAgent(session, repo, scratch, tries=3, model_timeout_s=300, on_event=, edit_format="blocks" | "whole")``:
  ``await run(request)``.
- ``apply_to_repo(result, repo)``: write the changed files into the repository (after
  the person's yes); refuses when a file changed in the repository since it was read.

NOTE (the loop). The tests run once before any edit, so the first prompt holds their
failures. The tests are the judge: an edit that changes an existing test's lines is
rejected (adding a test is allowed), unless the request names that file. Each try is one ``llm.generate`` call with the request, the tree, the relevant
files as they are now in the scratch copy, the tests' last output, and why the previous
reply was rejected, if it was. A call with no reply within ``model_timeout_s`` (on the
kernel's clock) is stopped in the engine and spends its try like a rejected reply. A reply is parsed and applied all or nothing
(``edits``); a rejected reply spends its try and changes nothing. An applied reply is
written to the scratch copy and the tests run again; edits accumulate across tries.
The run stops at the first try whose tests pass, or when the tries are spent. The
repository itself is only ever written by ``apply_to_repo``.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.dev import edits as edits_
from llmos.dev import prompt
from llmos.dev.repo import Repo, is_test, relevant, unified
from llmos.dev.session import DevSession, TestRun
from llmos.errors import InvalidArgument, LLMOSError, TimedOut

__all__ = ["Outcome", "Try", "DevResult", "DevAgent", "apply_to_repo", "TRIES_DEFAULT", "TRIES_MAX",
           "MODEL_TIMEOUT_S"]

TRIES_DEFAULT = 3
TRIES_MAX = 10
FILES_BUDGET_CHARS = 12_000       # file text shown per try (the planner tier's context is 8k tokens)
REPLY_MAX_TOKENS = 900
TEST_TIMEOUT_S = 60
MODEL_TIMEOUT_S = 300.0           # seconds one model call may take (the planner tier's slowest try here: ~120 s)
RETRY_TEMPERATURE = 0.4

OnEvent = Callable[[str, dict[str, Any]], None]


class Outcome(enum.IntEnum):
    PASSED = 1        # an edit was made and the tests pass
    FAILED = 2        # edits were made, the tests still fail (or time out)
    NO_CHANGE = 3     # no reply could be applied: nothing to show or apply

    @property
    def word(self) -> str:
        return self.name.lower().replace("_", " ")


@dataclass
class Try:
    index: int                     # 1-based
    applied: bool
    reason: str = ""               # why the reply was rejected ("" when applied)
    files: list[str] = field(default_factory=list)   # files this try changed
    tests: TestRun | None = None   # the tests after the edit (None when rejected)
    seconds: float = 0.0
    reply: str = ""                # the model's reply (kept for `--json` and debugging)
    timed_out: bool = False        # no reply within the model timeout (the generation was stopped)


@dataclass
class DevResult:
    outcome: Outcome
    request: str
    tries: list[Try]
    baseline: TestRun              # the tests before any edit
    changed: dict[str, str]        # path -> new text (files that differ from the repository)
    originals: dict[str, str | None]   # path -> text when read (None: the file is new)
    diff: str                      # unified diff of every changed file
    seconds: float
    model: str | None

    @property
    def tests(self) -> TestRun:
        for t in reversed(self.tries):
            if t.tests is not None:
                return t.tests
        return self.baseline

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.word, "passed": self.passed, "tries_used": len(self.tries),
                "tries": [{"index": t.index, "applied": t.applied, "reason": t.reason, "files": t.files,
                           "timed_out": t.timed_out,
                           "tests_passed": None if t.tests is None else t.tests.passed,
                           "seconds": t.seconds} for t in self.tries],
                "baseline_passed": self.baseline.passed, "files": sorted(self.changed), "diff": self.diff,
                "tests_output": prompt.tail(self.tests.output), "seconds": self.seconds, "model": self.model}


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return None


class DevAgent:
    def __init__(self, session: DevSession, repo: Repo, scratch: Path, *, tries: int = TRIES_DEFAULT,
                 test_timeout_s: float = TEST_TIMEOUT_S, model_timeout_s: float = MODEL_TIMEOUT_S,
                 on_event: OnEvent | None = None, edit_format: str = "blocks") -> None:
        if edit_format not in prompt.FORMATS:
            raise InvalidArgument(f"--edit-format: expected one of {', '.join(prompt.FORMATS)}, got "
                                  f"{edit_format!r}", field="edit_format", expected=" | ".join(prompt.FORMATS))
        if not 1 <= tries <= TRIES_MAX:
            raise InvalidArgument(f"--tries: expected 1 to {TRIES_MAX}, got {tries}", field="tries",
                                  expected=f"an integer from 1 to {TRIES_MAX}")
        if not (isinstance(model_timeout_s, (int, float)) and model_timeout_s > 0):
            raise InvalidArgument(f"--model-timeout: expected a positive number of seconds, got "
                                  f"{model_timeout_s!r}", field="model_timeout", expected="seconds > 0")
        self.session = session
        self.repo = repo
        self.scratch = scratch          # the copy the run edits and tests
        self.tries = tries
        self.edit_format = edit_format  # what the model is asked for (every format is accepted back)
        self.test_timeout_s = test_timeout_s
        self.model_timeout_s = model_timeout_s   # one model call's limit (seconds, kernel clock)
        self.on_event = on_event or (lambda kind, data: None)

    def _texts(self) -> dict[str, str]:
        """The scratch copy's text files now (the repository's list plus files the run made)."""
        out: dict[str, str] = {}
        for rel in self._paths:
            t = _read(self.scratch, rel)
            if t is not None:
                out[rel] = t
        return out

    async def _test(self) -> TestRun:
        run = await self.session.run_tests(self.repo.test_cmd, self.test_timeout_s)
        self.on_event("tests", {"passed": run.passed, "exit_code": run.exit_code, "seconds": run.seconds,
                                "limit": run.limit, "summary": _summary(run)})
        return run

    async def run(self, request: str) -> DevResult:
        if not isinstance(request, str) or not request.strip():
            raise InvalidArgument("request: expected what to change, in plain words; got nothing",
                                  field="request", expected="a non-empty request",
                                  hint='e.g. "add a --verbose flag and a test for it"')
        t0 = time.monotonic()
        self._paths: list[str] = list(self.repo.files)
        originals: dict[str, str | None] = {}
        self.on_event("read", {"files": len(self.repo.files), "test_cmd": self.repo.test_cmd,
                               "source": self.repo.test_source})
        # the tests as they were are the judge: their lines stay, unless the request names the file
        protected = {f for f in self.repo.files if is_test(f) and f not in request
                     and f.rsplit("/", 1)[-1] not in request}
        baseline = await self._test()
        last = baseline
        tries: list[Try] = []
        rejected: str | None = None
        for i in range(1, self.tries + 1):
            ts = time.monotonic()
            texts = self._texts()
            shown_paths = relevant(self.repo, texts, request, last.output, FILES_BUDGET_CHARS)
            shown = {p: texts[p] for p in shown_paths}
            msgs = prompt.messages(request, self._paths, shown, self.repo.test_cmd, last.output,
                                   last.passed, rejected, tried=sum(t.applied for t in tries),
                                   tests={p for p in shown if p in protected},
                                   edit_format=self.edit_format)
            self.on_event("asking", {"try": i, "of": self.tries, "files": shown_paths})
            # greedy first; a retry samples, so a reply that was rejected is not simply repeated
            try:
                reply = await self.session.generate(msgs, REPLY_MAX_TOKENS, 0.0 if i == 1 else RETRY_TEMPERATURE,
                                                    timeout_s=self.model_timeout_s)
            except TimedOut:
                why = f"no reply within {self.model_timeout_s:g} s (--model-timeout); the generation was stopped"
                tries.append(Try(i, False, why, seconds=round(time.monotonic() - ts, 3), timed_out=True))
                self.on_event("timeout", {"try": i, "reason": why})
                continue
            try:
                new = edits_.apply(edits_.parse(reply), texts, protected)
            except edits_.EditRejected as e:
                rejected = e.message
                tries.append(Try(i, False, e.message, seconds=round(time.monotonic() - ts, 3), reply=reply))
                self.on_event("rejected", {"try": i, "reason": e.message})
                continue
            rejected = None
            for rel, text in new.items():
                if rel not in originals:
                    originals[rel] = _read(self.repo.root, rel)
                dest = self.scratch / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text)
                if rel not in self._paths:
                    self._paths.append(rel)
            self.on_event("edited", {"try": i, "files": sorted(new)})
            last = await self._test()
            tries.append(Try(i, True, files=sorted(new), tests=last, seconds=round(time.monotonic() - ts, 3),
                             reply=reply))
            if last.passed:
                break
        changed = {rel: t for rel in originals if (t := _read(self.scratch, rel)) != originals[rel]
                   and t is not None}
        diff = "".join(unified(rel, originals[rel], changed[rel]) for rel in sorted(changed))
        if not changed:
            outcome = Outcome.NO_CHANGE
        else:
            outcome = Outcome.PASSED if last.passed and any(t.applied for t in tries) else Outcome.FAILED
        return DevResult(outcome, request, tries, baseline, changed, {r: originals[r] for r in changed}, diff,
                         round(time.monotonic() - t0, 3), self.session.model)


def _summary(run: TestRun) -> str:
    if run.limit:
        return run.limit
    lines = [ln.strip() for ln in run.output.strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else f"exit {run.exit_code}"


def apply_to_repo(result: DevResult, repo: Repo) -> list[str]:
    """Write the run's changed files into the repository; the paths written.

    Refuses (nothing written) when a file changed in the repository since the run read
    it, so an edit made meanwhile by the person is never overwritten."""
    moved = [rel for rel, text in result.originals.items()
             if _digest(_read(repo.root, rel)) != _digest(text)]
    if moved:
        raise LLMOSError(f"{', '.join(sorted(moved))} changed in {repo.root} while the agent worked; "
                         "nothing was applied", hint="run llmos dev again on the current files")
    written = []
    for rel in sorted(result.changed):
        dest = repo.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(result.changed[rel])
        written.append(rel)
    return written
