"""Triggers: what starts a workflow. Read once from the model's JSON into a ``Trigger``.

Map:
- ``Kind``: time (a cron rule in a time zone) | file (a file appears or changes in a
  folder) | webhook (a POST to the API) | after (another workflow finished).
- ``Trigger``: the typed value; ``check(workdir)`` refuses a bad rule with one line
  naming the field; ``next_after(epoch)`` is the next fire time of a time rule.
- ``SCHEMA`` / ``split(description, generate)``: the model separates the trigger from the
  task through one small constrained JSON schema (``llm.generate`` with ``json_schema``);
  there are no English phrase tables here. The cron rule is written by the model and
  checked by ``croniter``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from croniter import croniter

from llmos.errors import InvalidArgument, PermissionDenied

__all__ = ["Kind", "Trigger", "SCHEMA", "SYSTEM", "split"]


class Kind(enum.StrEnum):
    TIME = "time"
    FILE = "file"
    WEBHOOK = "webhook"
    AFTER = "after"


@dataclass(frozen=True)
class Trigger:
    kind: Kind
    cron: str = ""          # time: five-field cron rule ("0 9 * * 1-5")
    tz: str = "UTC"         # time: IANA zone the rule is read in
    folder: str = ""        # file: folder watched (relative to the workspace, or absolute)
    pattern: str = "*"      # file: glob on the file name
    after: str = ""         # after: the workflow whose finishing starts this one

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Kind) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Any) -> Trigger:
        if not isinstance(d, dict):
            raise InvalidArgument("trigger: expected an object", field="trigger", expected="object")
        try:
            kind = Kind(d.get("kind", d.get("trigger")))
        except ValueError:
            raise InvalidArgument(f"trigger.kind: {d.get('kind')!r} is not a trigger", field="trigger.kind",
                                  expected="time | file | webhook | after") from None
        return cls(kind, str(d.get("cron") or ""), str(d.get("tz") or d.get("timezone") or "UTC"),
                   str(d.get("folder") or ""), str(d.get("pattern") or "*"), str(d.get("after") or ""))

    def describe(self) -> str:
        if self.kind == Kind.TIME:
            return f"time rule '{self.cron}' ({self.tz})"
        if self.kind == Kind.FILE:
            return f"a file matching '{self.pattern}' appears or changes in {self.folder}"
        if self.kind == Kind.AFTER:
            return f"after workflow '{self.after}' succeeds"
        return "a POST to its webhook"

    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(f"trigger.tz: {self.tz!r} is not a time zone", field="trigger.tz",
                                  expected="an IANA zone such as Europe/Paris or UTC") from None

    def folder_path(self, workdir: Path) -> Path:
        p = Path(self.folder).expanduser()
        return (p if p.is_absolute() else workdir / p).resolve()

    def check(self, workdir: Path) -> None:
        """Refuse a rule that cannot fire, or a folder outside the workflow's workspace."""
        if self.kind == Kind.TIME:
            if not self.cron.strip() or not croniter.is_valid(self.cron) or len(self.cron.split()) != 5:
                raise InvalidArgument(f"trigger.cron: {self.cron!r} is not a schedule", field="trigger.cron",
                                      expected="a five-field cron rule such as '0 9 * * 1-5'")
            self.zone()
        elif self.kind == Kind.FILE:
            if not self.folder.strip():
                raise InvalidArgument("trigger.folder: expected the folder to watch", field="trigger.folder",
                                      expected="a folder inside the workspace")
            folder, root = self.folder_path(workdir), workdir.resolve()
            if folder != root and root not in folder.parents:
                raise PermissionDenied(f"trigger.folder: {folder} is outside the workflow's workspace {root}; "
                                       "its agent may read only there")
            if not folder.is_dir():
                raise InvalidArgument(f"trigger.folder: {folder} is not a folder", field="trigger.folder",
                                      expected="an existing folder inside the workspace")
        elif self.kind == Kind.AFTER and not self.after.strip():
            raise InvalidArgument("trigger.after: expected a workflow's name", field="trigger.after",
                                  expected="the name of an existing workflow")

    def next_after(self, epoch: float) -> float:
        """The first fire time strictly after ``epoch`` (seconds), in the rule's zone."""
        start = dt.datetime.fromtimestamp(epoch, self.zone())
        return float(croniter(self.cron, start).get_next(float))


# The model's answer: which trigger, its fields, and the task with the trigger taken out.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "trigger": {"enum": [k.value for k in Kind] + ["none"]},
        "cron": {"type": "string", "maxLength": 60},
        "timezone": {"type": "string", "maxLength": 60},
        "folder": {"type": "string", "maxLength": 300},
        "pattern": {"type": "string", "maxLength": 60},
        "after": {"type": "string", "maxLength": 60},
        "task": {"type": "string", "maxLength": 2000},
    },
    "required": ["trigger", "cron", "timezone", "folder", "pattern", "after", "task"],
    "additionalProperties": False,
}

SYSTEM = (
    "You turn a standing order into JSON: when it should run (the trigger) and what to do "
    "each time (the task). trigger is one of: time (a schedule: write cron as five fields "
    "'minute hour day-of-month month day-of-week', day-of-week 0-6 with 0 Sunday, e.g. every "
    "weekday at 9 is '0 9 * * 1-5'; timezone is an IANA zone, UTC unless the order names "
    "one), file (when a file lands or changes in a folder: folder, and pattern a glob such as "
    "'*.csv'), webhook (when called from outside), after (when another workflow finishes: "
    "its name in after), none (the order says no when). Leave unused fields empty. task is "
    "the order without the when, as a request to do once.")

Generate = Callable[[list[dict[str, str]], dict[str, Any]], Awaitable[str]]


async def split(description: str, generate: Generate) -> tuple[Trigger, str]:
    """Ask the model to separate trigger and task; raise one clear line when it cannot."""
    text = await generate([{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": description}], SCHEMA)
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise InvalidArgument("description: the model's answer was not the trigger JSON", field="description",
                              expected="an order with a clear when and what") from None
    if not isinstance(d, dict) or d.get("trigger") in (None, "none"):
        raise InvalidArgument("description: no clear trigger (when should it run?)", field="description",
                              expected='a when, e.g. "every weekday at 9", "when a CSV lands in drop/"')
    task = " ".join(str(d.get("task") or "").split())
    if not task:
        raise InvalidArgument("description: no task left once the trigger is taken out", field="description",
                              expected="what to do each time")
    return Trigger.from_dict(d), task
