"""The OpenAI-compatible API, driven by the official ``openai`` client, unchanged, over a socket."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from llmos.api.openai_schemas import ChatRequest
from llmos.api.openai_tools import ToolPlan

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def answer(req) -> str:
    """The fake model: answers by the last user message's first word."""
    last = [m for m in req.messages or () if m.get("role") == "user"][-1]["content"] if req.messages else req.prompt
    if last.startswith("weather"):
        return json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})
    if last.startswith("chat"):
        return json.dumps({"content": "no tool needed"})
    if last.startswith("person"):
        return json.dumps({"name": "Ada", "age": 36})
    return "Hello from the fake engine"


@pytest.fixture(scope="module")
def daemon(module_config, daemon_factory):
    srv = daemon_factory(module_config, answer)
    yield srv
    srv.stop()


@pytest.fixture
def oai(daemon):
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token, max_retries=0)
    yield client
    client.close()


def test_models(oai):
    ids = [m.id for m in oai.models.list().data]
    assert "fake" in ids


def test_registry_names_list_an_installed_packaged_model(config, tmp_path):
    from llmos.api.openai import _registry_names

    (tmp_path / "q.gguf").write_bytes(b"GGUF")
    assert ("qwen2.5-coder-1.5b", "packaged") in _registry_names(config.replace(planner_gguf=str(tmp_path / "q.gguf")))
    assert "qwen2.5-coder-1.5b" not in dict(_registry_names(config.replace(planner_gguf=str(tmp_path / "no.gguf"))))


def test_chat_completion(oai, daemon):
    r = oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi there"}],
                                    max_tokens=50, temperature=0, seed=7)
    assert r.choices[0].message.content == "Hello from the fake engine"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 5 and r.usage.total_tokens > 5
    req = daemon.engine.requests[-1]
    assert req.params.max_tokens == 50 and req.params.seed == 7 and req.owner == "root"


def test_chat_streaming_with_usage(oai):
    chunks = list(oai.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake engine"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_priority_header_reaches_the_kernel(oai, daemon):
    oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}],
                                extra_headers={"X-LLMOS-Priority": "-12"})
    assert daemon.engine.requests[-1].priority == -12
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"X-LLMOS-Priority": "urgent"})
    assert e.value.body["param"] == "X-LLMOS-Priority"


def test_function_calling(oai, daemon):
    r = oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "weather in Paris?"}],
                                    tools=[WEATHER_TOOL])
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    call = msg.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    # the engine was constrained to the call-or-answer schema and told about the tool
    req = daemon.engine.requests[-1]
    assert "anyOf" in req.json_schema and "get_weather" in req.messages[0]["content"]
    # the tool result goes back in, the model answers in words
    r2 = oai.chat.completions.create(model="fake", tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "chat: what now?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}])
    assert r2.choices[0].message.content == "no tool needed" and not r2.choices[0].message.tool_calls
    sent = daemon.engine.requests[-1].messages
    assert any(m["role"] == "tool" and "sunny" in m["content"] for m in sent)


def test_function_calling_streamed(oai):
    chunks = list(oai.chat.completions.create(
        model="fake", stream=True, tools=[WEATHER_TOOL], tool_choice="required",
        messages=[{"role": "user", "content": "weather please"}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_response_format_json_schema(oai, daemon):
    r = oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "person: Ada"}],
                                    response_format={"type": "json_schema",
                                                     "json_schema": {"name": "person", "schema": PERSON}})
    assert json.loads(r.choices[0].message.content) == {"name": "Ada", "age": 36}
    assert daemon.engine.requests[-1].json_schema == PERSON


def test_completions_and_echo(oai):
    r = oai.completions.create(model="fake", prompt="say something", max_tokens=3, echo=True)
    assert r.choices[0].text == "say somethingHello from the"
    assert r.choices[0].finish_reason == "length"
    streamed = "".join(c.choices[0].text for c in oai.completions.create(
        model="fake", prompt="say", stream=True) if c.choices)
    assert streamed == "Hello from the fake engine"


def test_n_choices(oai):
    r = oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}], n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage.completion_tokens == 15


def test_clear_errors_for_what_cannot_be_honoured(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}], logprobs=True)
    assert e.value.body["param"] == "logprobs"
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model="fake", input="hello")
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=str(oai.base_url), api_key="llmos-bad", max_retries=0).models.list()


def test_chat_request_is_a_kernel_process(oai, daemon):
    from llmos.sdk import Client

    r = oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    pid = r.model_extra["llmos"]["pids"][0]
    with Client(daemon.url, token=daemon.token) as c:
        p = c.get_process(pid)
    assert p["kind"] == "llm" and p["owner"] == "root" and p["state"] == "succeeded"
    assert p["tokens_out"] == 5


def test_tool_plan_parse_never_invents_calls():
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL])
    plan = ToolPlan.build(req)
    assert plan.parse("not json") == ("not json", None)
    bad = json.dumps({"tool_calls": [{"name": "rm_rf", "arguments": {}}]})
    assert plan.parse(bad) == (bad, None)
    none = ToolPlan.build(ChatRequest(model="m", messages=[{"role": "user", "content": "x"}],
                                      tools=[WEATHER_TOOL], tool_choice="none"))
    assert not none.active and none.schema is None


# ── a client that leaves mid-stream ─────────────────────────────────────────
@pytest.fixture(scope="module")
def slow_daemon(tmp_path_factory):
    """A daemon whose engine takes 20 ms a token for a 400-token answer (about 8 s)."""
    from llmos.api.server import ServerThread
    from llmos.config import load_config
    from llmos.hal.fake import FakeHAL
    from llmos.llm.fake import FakeEngine
    from llmos.tools.registry import default_registry

    config = load_config(env={"LLMOS_HOME": str(tmp_path_factory.mktemp("llmos-slow"))})
    engine = FakeEngine("w " * 400, model="fake", step_delay_s=0.02)
    srv = ServerThread(config, engines={"fake": engine}, tools=default_registry(), hal=FakeHAL(),
                       preload_models=False)
    srv.engine = engine
    srv.start()
    yield srv
    srv.stop()


def _running_llm(api: httpx.Client) -> dict:
    procs = api.get("/api/v1/processes", params={"state": "running"}).json()["processes"]
    (p,) = [p for p in procs if p["kind"] == "llm"]
    return p


def _ended(api: httpx.Client, pid: int, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        p = api.get(f"/api/v1/processes/{pid}").json()
        if p["state"] in ("succeeded", "failed", "killed") or time.monotonic() > deadline:
            return p
        time.sleep(0.05)


@pytest.mark.parametrize("route", ["chat", "completions"])
def test_client_disconnect_kills_the_generation(slow_daemon, route):
    """Dropping the connection mid-stream kills the process (as the caller) and frees the
    engine's sequence; the daemon goes on serving."""
    api = httpx.Client(base_url=slow_daemon.url, headers={"Authorization": f"Bearer {slow_daemon.token}"})
    oai = openai.OpenAI(base_url=slow_daemon.url + "/v1", api_key=slow_daemon.token, max_retries=0)
    if route == "chat":
        stream = oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "go"}],
                                             max_tokens=500, stream=True)
    else:
        stream = oai.completions.create(model="fake", prompt="go", max_tokens=500, stream=True)
    it = iter(stream)
    for _ in range(3):                 # a few tokens arrived: the generation is under way
        next(it)
    p = _running_llm(api)
    stream.close()                     # the client goes away
    oai.close()
    p = _ended(api, p["pid"])
    assert p["state"] == "killed" and "client disconnected" in p["reason"]
    engine = slow_daemon.engine
    assert engine.requests[-1].request_id not in {v.request_id for v in engine.views()}   # cancelled
    made = engine.stats().tokens_generated
    time.sleep(0.1)
    assert engine.stats().tokens_generated == made                        # and nothing runs on
    assert api.get("/api/v1/health").json()["ok"]
    api.close()
