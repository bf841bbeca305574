"""The model as a tool: ``llm`` steps summarize, translate, classify, extract, answer
questions about a text, or write new text.

Map:
- ``SCHEMA``: the ``llm`` tool as the planner sees it, beside the registry's tools.
- ``request_for(args) -> (messages, json_schema | None, max_tokens)``: one generation;
  ``classify`` with labels is constrained to one of them.
- ``result(args, text)``: the model's reply as the step's output (the label for
  ``classify``; the text otherwise, trimmed).
- Table mode (``path`` and ``column``): the task runs once per row on that column's text
  (at most ``TABLE_MAX_ROWS``) and the results become ``new_column``; with ``save_to``
  the table is written back with it (``data.write``).
- ``write_view(args)``: with ``save_to``, the ``files.write`` call that saves the reply
  (the runner checks its path and risk as that call's, and makes it through the kernel
  like any tool step); None without.

The runner runs an ``llm`` step as an ``llm.generate`` syscall of the run's agent, at the
run's priority, as a child of the run process (scheduled, accounted, audited like any
generation); a list ``text`` runs once per element. The text is data: it goes in the user
turn, fenced, and the reply is only ever text (never a step or a right).
"""

from __future__ import annotations

import json
from typing import Any

from llmos.types import Message

__all__ = ["SCHEMA", "TASKS", "request_for", "result", "write_view", "SAVE_TOOL", "TABLE_SAVE_TOOL",
           "TABLE_MAX_ROWS", "PATH_ARGS", "table_mode", "TEXT_MAX_CHARS"]

TASKS = ("summarize", "translate", "classify", "extract", "answer", "write")
SAVE_TOOL = "files.write"        # how an llm step's save_to is written
TABLE_SAVE_TOOL = "data.write"   # ... in table mode
TABLE_MAX_ROWS = 100             # most rows one table-mode step works on
PATH_ARGS = {"path": "r", "save_to": "w"}
TEXT_MAX_CHARS = 12_000          # the most of a text one generation reads
_OUT_TOKENS = {"summarize": 220, "classify": 16, "extract": 300, "answer": 160, "write": 500}

SCHEMA: dict[str, Any] = {
    "name": "llm",
    "description": "Use the language model on a text: summarize it, translate it, classify it "
                   "(give labels), extract facts from it, answer a question about it, or write new text; "
                   "save_to keeps what it wrote in a file. With path and column it does this for each row "
                   "of a table and adds the results as new_column.",
    "returns": "the text it wrote (for classify: one of the labels)",
    "parameters": {
        "type": "object",
        "properties": {
            "task": {"enum": list(TASKS)},
            "instruction": {"type": "string", "maxLength": 300,
                            "description": "what to do, e.g. 'in French', 'in 3 sentences', the question"},
            "text": {"type": "string", "maxLength": 2400, "description": "the text, usually $stepN.output.text"},
            "labels": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 10,
                       "description": "for classify: the allowed labels"},
            "save_to": {"type": "string", "minLength": 1, "maxLength": 300,
                        "description": "optional file to save what it wrote in (with path: the table "
                                       "with the new column)"},
            "path": {"type": "string", "minLength": 1, "maxLength": 300,
                     "description": "a table file: work on each row's column instead of on text"},
            "column": {"type": "string", "minLength": 1, "maxLength": 200,
                       "description": "with path: the column that holds each row's text"},
            "new_column": {"type": "string", "minLength": 1, "maxLength": 100,
                           "description": "with path: the name of the new column for the results"},
        },
        "required": ["task", "instruction"],
        "additionalProperties": False,
    },
}

_SYSTEM = {
    "summarize": "Summarize the text the user gives. Keep the key facts, names and numbers. "
                 "Reply with the summary only.",
    "translate": "Translate the text the user gives. Keep the meaning, names, numbers and line breaks. "
                 "Reply with the translation only.",
    "classify": "Classify the text the user gives. Reply with one label only.",
    "extract": "Extract what the user asks for from the text, exactly as it appears in the text, "
               "one item per line. Reply with the items only.",
    "answer": "Answer the question using only the text the user gives. Be brief.",
    "write": "Write what the user asks for. Reply with the text only.",
}


def request_for(args: dict[str, Any]) -> tuple[list[Message], dict | None, int]:
    task = args.get("task", "write")
    instruction = str(args.get("instruction", "")).strip()
    text = args.get("text")
    text = "" if text is None else (text if isinstance(text, str) else json.dumps(text, default=str))
    text = text[:TEXT_MAX_CHARS]
    labels = [str(x) for x in args.get("labels") or [] if str(x).strip()]
    user = f"Task: {task}" + (f" — {instruction}" if instruction else "")
    if labels:
        user += f"\nLabels: {', '.join(labels)}"
    if text:
        user += f"\n\nText:\n<<<\n{text}\n>>>"
    schema = {"enum": labels} if task == "classify" and labels else None
    if task == "translate":
        n = min(1500, 60 + len(text) // 2)
    elif task == "extract":
        n = min(800, 80 + len(text) // 4)
    else:
        n = _OUT_TOKENS.get(task, 300)
    return ([{"role": "system", "content": _SYSTEM.get(task, _SYSTEM["write"])},
             {"role": "user", "content": user}], schema, n)


def result(args: dict[str, Any], text: str) -> str:
    out = text.strip()
    if args.get("task") == "classify" and args.get("labels"):
        try:
            v = json.loads(out)
            if isinstance(v, str):
                return v
        except ValueError:
            pass
    if out.startswith("```"):
        out = out.strip("`").split("\n", 1)[-1].strip()
    # the model may echo the fence the text came in
    if out.startswith("<<<"):
        out = out[3:].lstrip()
    if out.endswith(">>>"):
        out = out[:-3].rstrip()
    return out


def write_view(args: dict[str, Any], content: str = "") -> dict[str, Any] | None:
    """The ``files.write`` arguments that save an llm step's reply, or None without save_to."""
    dest = args.get("save_to")
    if not isinstance(dest, str) or not dest.strip():
        return None
    return {"path": dest, "content": content}


def table_mode(args: dict[str, Any]) -> bool:
    return bool(args.get("path")) and bool(args.get("column"))
