"""Bodies of the OpenAI-compatible API (``/v1``), as pydantic models.

Only what the engines can honour is accepted with a non-default value; a field the
OpenAI API has but LLM OS cannot honour (logprobs, penalties, logit_bias, images...)
is refused with an error naming it, never silently ignored. Fields that never change
the output (``user``, ``metadata``, ``store``...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmos.errors import InvalidArgument

__all__ = ["ChatMessage", "FunctionDef", "ToolDef", "ToolChoiceFunction", "ResponseFormat",
           "StreamOptions", "ChatRequest", "CompletionRequest", "EmbeddingRequest",
           "N_MAX", "STOP_MAX", "ModelList", "ChatCompletionOut", "CompletionOut", "EmbeddingList"]

N_MAX = 8          # most choices per request
STOP_MAX = 4       # most stop strings (as OpenAI)
EMBED_MAX = 2048   # most inputs per embeddings request (as OpenAI)


def _bad(field: str, message: str, expected: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", field=field, expected=expected)


class _Body(BaseModel):
    # Unknown fields are tolerated: OpenAI clients and SDK wrappers send vendor fields.
    model_config = ConfigDict(extra="allow")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(max_length=128)
    arguments: str = Field("", max_length=1 << 20)


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field("", max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, max_length=128)
    tool_calls: list[ToolCall] | None = Field(None, max_length=64)
    tool_call_id: str | None = Field(None, max_length=200)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = Field(None, max_length=4000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDef


class ToolChoiceFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.function.get("name", ""))


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = Field("response", max_length=64)
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _needs_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and (self.json_schema is None or self.json_schema.json_schema is None):
            raise ValueError("response_format.json_schema.schema is required when type is json_schema")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


def _refuse_unsupported(body: BaseModel, checks: dict[str, Any]) -> None:
    for field, ok_values in checks.items():
        v = getattr(body, field, None)
        if v is not None and v not in ok_values:
            raise _bad(field, f"{v!r} is not supported by this server",
                       " or ".join(repr(x) for x in ok_values) + " (or leave it out)")


class _Sampling(_Body):
    model: str = Field(min_length=1, max_length=200)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=N_MAX)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None

    def check(self) -> None:
        """Refuse what the engines cannot honour, naming the field (InvalidArgument)."""
        stops = self.stops()
        if len(stops) > STOP_MAX or any(not isinstance(s, str) or not s for s in stops):
            raise _bad("stop", "too many or empty stop strings", f"up to {STOP_MAX} non-empty strings")
        _refuse_unsupported(self, {"presence_penalty": (0,), "frequency_penalty": (0,)})
        if self.logit_bias:
            raise _bad("logit_bias", "is not supported by this server", "an empty object (or leave it out)")
        if self.stream and self.n > 1:
            raise _bad("n", "n > 1 with stream=true is not supported", "1 when streaming; or send n requests")

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_tokens: int | None = Field(None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(None, ge=1, le=1 << 20)
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def check(self) -> None:
        super().check()
        _refuse_unsupported(self, {"logprobs": (False,), "top_logprobs": (0,)})
        names = {t.function.name for t in self.tools or []}
        if isinstance(self.tool_choice, ToolChoiceFunction) and self.tool_choice.name not in names:
            raise _bad("tool_choice", f"names {self.tool_choice.name!r}, which is not in tools",
                       "the name of one of the tools")
        if self.tool_choice == "required" and not self.tools:
            raise _bad("tool_choice", "'required' needs tools", "a non-empty tools list")
        for i, m in enumerate(self.messages):
            if isinstance(m.content, list):
                for j, part in enumerate(m.content):
                    if part.type != "text" or part.text is None:
                        raise _bad(f"messages.{i}.content.{j}", f"content part of type {part.type!r} "
                                   "is not supported", "text parts only")


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1, le=1 << 20)
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = Field(None, ge=1, le=N_MAX)

    def check(self) -> None:
        super().check()
        _refuse_unsupported(self, {"logprobs": (0,), "best_of": (1,)})
        if self.suffix:
            raise _bad("suffix", "fill-in-the-middle is not supported by this server", "null")
        prompts = self.prompts()
        if len(prompts) > N_MAX:
            raise _bad("prompt", f"{len(prompts)} prompts", f"at most {N_MAX} prompts")
        if not prompts or any(not p for p in prompts):
            raise _bad("prompt", "empty prompt", "a non-empty string or a list of them")
        if len(prompts) * self.n > N_MAX:
            raise _bad("n", f"{len(prompts)} prompts x n={self.n} completions is too many",
                       f"at most {N_MAX} completions per request")

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1, max_length=200)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=65536)
    user: str | None = Field(None, max_length=256)

    def check(self) -> None:
        items = self.inputs()
        if not items or len(items) > EMBED_MAX or any(not x for x in items):
            raise _bad("input", "empty, or too many inputs", f"1..{EMBED_MAX} non-empty strings")

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# ── answers (documented in the OpenAPI document; the routes build them as JSON) ──
class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelOut(_Out):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(_Out):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class UsageOut(_Out):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class AssistantMessage(_Out):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(_Out):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]
    logprobs: None = None


class ChatCompletionOut(_Out):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    llmos: dict[str, Any] | None = Field(None, description="{pids: the kernel process of each choice}")


class CompletionChoice(_Out):
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter"]
    logprobs: None = None


class CompletionOut(_Out):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut


class EmbeddingOut(_Out):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(_Out):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: UsageOut
