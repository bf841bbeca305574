"""Function calling on engines that only generate text: prompt, constrain, parse.

Map:
- ``ToolPlan.build(request)``: from ``tools`` / ``tool_choice`` / ``response_format``,
  the system text that lists the functions, and the JSON schema the engine's
  constrained decoder (llguidance) must follow: either ``{"tool_calls": [{"name",
  "arguments"}, ...]}`` (each name one of the tools, arguments that tool's
  ``parameters``) or ``{"content": ...}``. With ``tool_choice`` = ``required`` or a
  named function, only the first form is allowed; with ``none``, no tools at all.
- ``ToolPlan.parse(text)``: the model's text back into ``(content, tool_calls)``
  in OpenAI's shape (``arguments`` as a JSON string, ids ``call_<hex>``). Text that is
  not the expected JSON (an engine without constrained decoding, a cut-off answer)
  is returned as plain content, never invented into a call.
- ``messages_for_engine(messages)``: OpenAI messages -> engine messages (developer ->
  system, text parts joined, an assistant's tool calls and tool results as text in
  the same JSON form the model is asked to write).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from llmos.api.openai_schemas import ChatMessage, ChatRequest, ToolChoiceFunction

__all__ = ["ToolPlan", "messages_for_engine", "response_schema"]


def response_schema(req: ChatRequest) -> dict[str, Any] | None:
    """The JSON schema ``response_format`` asks for (None for plain text)."""
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "object"}
    assert rf.json_schema is not None and rf.json_schema.json_schema is not None
    return dict(rf.json_schema.json_schema)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content)


def messages_for_engine(messages: list[ChatMessage]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for m in messages:
        role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
        text = _text(m.content)
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for c in m.tool_calls:
                try:
                    args = json.loads(c.function.arguments or "{}")
                except ValueError:
                    args = c.function.arguments
                calls.append({"name": c.function.name, "arguments": args})
            text = json.dumps({"tool_calls": calls})
        elif role == "tool":
            label = m.name or m.tool_call_id
            text = f"[result of {label}] {text}" if label else text
        msg = {"role": role, "content": text}
        out.append(msg)
    return out


@dataclass
class ToolPlan:
    active: bool                      # the request offers tools the model may call now
    system_text: str                  # appended to (or placed as) the system message
    schema: dict[str, Any] | None     # what the engine must produce; None: free text
    names: tuple[str, ...]            # callable function names

    @classmethod
    def build(cls, req: ChatRequest) -> ToolPlan:
        content_schema = response_schema(req)
        tools = list(req.tools or [])
        choice = req.tool_choice
        if not tools or choice == "none":
            return cls(False, "", content_schema, ())
        if isinstance(choice, ToolChoiceFunction):
            tools = [t for t in tools if t.function.name == choice.name]
        max_calls = 1 if req.parallel_tool_calls is False or isinstance(choice, ToolChoiceFunction) else 8
        call_forms = []
        lines = []
        for t in tools:
            f = t.function
            params = f.parameters or {"type": "object", "properties": {}}
            call_forms.append({"type": "object", "additionalProperties": False,
                               "required": ["name", "arguments"],
                               "properties": {"name": {"const": f.name}, "arguments": params}})
            desc = (f.description or "").strip().replace("\n", " ")
            lines.append(f"- {f.name}: {desc} Arguments (JSON schema): "
                         f"{json.dumps(params, separators=(',', ':'))}")
        calls = {"type": "object", "additionalProperties": False, "required": ["tool_calls"],
                 "properties": {"tool_calls": {"type": "array", "minItems": 1, "maxItems": max_calls,
                                               "items": {"anyOf": call_forms}}}}
        must_call = choice == "required" or isinstance(choice, ToolChoiceFunction)
        if must_call:
            schema: dict[str, Any] = calls
            how = 'Answer only with JSON: {"tool_calls": [{"name": ..., "arguments": {...}}]}.'
        else:
            content = {"type": "object", "additionalProperties": False, "required": ["content"],
                       "properties": {"content": content_schema or {"type": "string"}}}
            schema = {"anyOf": [calls, content]}
            how = ('To call functions, answer only with JSON {"tool_calls": [{"name": ..., '
                   '"arguments": {...}}]}. To answer directly, answer with JSON {"content": ...}.')
        text = "You can call these functions:\n" + "\n".join(lines) + "\n" + how
        return cls(True, text, schema, tuple(t.function.name for t in tools))

    def engine_messages(self, messages: list[ChatMessage]) -> list[dict[str, str]]:
        out = messages_for_engine(messages)
        if not self.active:
            return out
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + self.system_text).strip()}
        else:
            out.insert(0, {"role": "system", "content": self.system_text})
        return out

    def parse(self, text: str) -> tuple[str | None, list[dict[str, Any]] | None]:
        """``(content, tool_calls)`` from the model's text."""
        if not self.active:
            return text, None
        try:
            data = json.loads(text)
        except ValueError:
            return text, None
        if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
            calls = []
            for c in data["tool_calls"]:
                if not isinstance(c, dict) or c.get("name") not in self.names:
                    return text, None
                args = c.get("arguments", {})
                calls.append({"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                              "function": {"name": c["name"],
                                           "arguments": args if isinstance(args, str) else json.dumps(args)}})
            if calls:
                return None, calls
        if isinstance(data, dict) and set(data) == {"content"}:
            v = data["content"]
            return (v if isinstance(v, str) else json.dumps(v)), None
        return text, None
