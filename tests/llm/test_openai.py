"""OpenAIEngine against a scripted OpenAI-compatible stub server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from stub_openai_server import Reply, StubServer, free_port

from llmos.errors import (
    Cancelled,
    ContextOverflow,
    EngineError,
    InvalidRequest,
    RemoteError,
    RemoteUnavailable,
)
from llmos.llm import openai_wire as wire
from llmos.llm.base import (
    GenerationRequest,
    SamplingParams,
    SeqState,
    StepDecision,
)
from llmos.llm.openai import OpenAIEngine, PriorityAdmission


@pytest.fixture
def server(openai_stub):
    return openai_stub


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the HTTP attempts the engine makes (connection attempts included)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def chat(text: str, **kw) -> GenerationRequest:
    sp = {k: kw.pop(k) for k in ("max_tokens", "stop", "temperature", "seed", "top_k") if k in kw}
    return GenerationRequest(messages=({"role": "user", "content": text},),
                             params=SamplingParams(**sp), **kw)


def prompt(text: str, **kw) -> GenerationRequest:
    sp = {k: kw.pop(k) for k in ("max_tokens", "stop") if k in kw}
    return GenerationRequest(prompt=text, params=SamplingParams(**sp), **kw)


async def make(server: StubServer, **kw) -> OpenAIEngine:
    kw.setdefault("backoff_s", 0.01)
    eng = OpenAIEngine(server.base_url if "base_url" not in kw else kw.pop("base_url"),
                       "stub-model", **kw)
    await eng.start()
    return eng


async def wait_for(cond, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


# ── streaming, usage, stop, params ───────────────────────────────────────────
async def test_chat_streams_chunks_and_result(server):
    eng = await make(server)
    try:
        h = eng.submit(chat("the quick brown fox"))
        chunks = [c async for c in h]
        done = await h.result()
    finally:
        await eng.close()
    assert "".join(c.text for c in chunks) == "the quick brown fox"
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) == 4
    assert done.text == "the quick brown fox" and done.finish_reason == "stop"
    assert server.paths == ["/v1/chat/completions"]
    body = server.requests[0]
    assert body["stream"] is True and body["model"] == "stub-model"
    assert body["messages"] == [{"role": "user", "content": "the quick brown fox"}]
    assert body["stream_options"] == {"include_usage": True}


async def test_prompt_uses_completions_endpoint(server):
    eng = await make(server)
    try:
        done = await eng.generate(prompt("once upon a time"))
    finally:
        await eng.close()
    assert server.paths == ["/v1/completions"]
    assert server.requests[0]["prompt"] == "once upon a time"
    assert done.text == "once upon a time"


async def test_sampling_params_are_sent(server):
    eng = await make(server)
    try:
        await eng.generate(chat("hi", temperature=0.7, seed=5, top_k=20, max_tokens=9, stop=["\n"]))
        await eng.generate(chat("hi"))
    finally:
        await eng.close()
    b = server.requests[0]
    assert (b["temperature"], b["seed"], b["top_k"], b["max_tokens"], b["stop"]) == (0.7, 5, 20, 9, ["\n"])
    assert "seed" not in server.requests[1] and "top_k" not in server.requests[1]
    assert "stop" not in server.requests[1]


async def test_usage_comes_from_the_server(server):
    server.script = lambda body: Reply(text="a b c", usage={"prompt_tokens": 42, "completion_tokens": 3})
    eng = await make(server)
    try:
        done = await eng.generate(chat("x"))
    finally:
        await eng.close()
    assert done.usage.prompt_tokens == 42 and done.usage.completion_tokens == 3
    assert done.usage.total_s >= done.usage.ttft_s > 0


async def test_usage_counted_when_server_sends_none(server):
    eng = await make(server, stream_usage=False)
    try:
        done = await eng.generate(chat("one two three four five"))
    finally:
        await eng.close()
    assert "stream_options" not in server.requests[0]
    assert done.usage.completion_tokens == 5
    assert done.usage.prompt_tokens == eng.count_tokens("user: one two three four five")


async def test_max_tokens_gives_length(server):
    eng = await make(server)
    try:
        done = await eng.generate(chat("a b c d e f g", max_tokens=3))
    finally:
        await eng.close()
    assert done.finish_reason == "length" and done.text == "a b c"
    assert done.usage.completion_tokens == 3


async def test_stop_honoured_by_server(server):
    eng = await make(server)
    try:
        done = await eng.generate(chat("alpha beta. gamma delta", stop=["."]))
    finally:
        await eng.close()
    assert done.text == "alpha beta" and done.finish_reason == "stop"


async def test_stop_enforced_locally_when_server_ignores_it(server):
    server.script = lambda body: Reply(text="alpha beta. gamma delta epsilon", honour_limits=False,
                                       token_delay_s=0.02)
    eng = await make(server)
    try:
        done = await eng.generate(chat("x", stop=["."]))
        await wait_for(lambda: server.aborted)  # the rest of the stream was abandoned
    finally:
        await eng.close()
    assert done.text == "alpha beta" and done.finish_reason == "stop"


async def test_max_tokens_enforced_locally_when_server_ignores_it(server):
    server.script = lambda body: Reply(text="a b c d e f", honour_limits=False)
    eng = await make(server)
    try:
        done = await eng.generate(chat("x", max_tokens=2))
    finally:
        await eng.close()
    assert done.text == "a b" and done.finish_reason == "length"


async def test_stream_without_blank_lines_and_with_comments():
    body = (b": keep-alive\nevent: message\ndata: {\"choices\":[{\"index\":0,\"text\":\"a\"}]}\n"
            b"data: {\"choices\":[{\"index\":0,\"text\":\" b\",\"finish_reason\":\"length\"}]}\n"
            b"data: [DONE]\n")

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    eng = OpenAIEngine("http://example.invalid/v1", "m", transport=httpx.MockTransport(handler))
    try:
        done = await eng.generate(prompt("p"))
    finally:
        await eng.close()
    assert done.text == "a b" and done.finish_reason == "length"


# ── constrained output ───────────────────────────────────────────────────────
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "age": {"type": "integer", "minimum": 3, "maximum": 9}}}


async def test_json_schema_passed_through(server):
    eng = await make(server)
    try:
        done = await eng.generate(chat("give a person", json_schema=SCHEMA))
    finally:
        await eng.close()
    rf = server.requests[0]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == SCHEMA
    assert json.loads(done.text) == {"name": "x", "age": 3}
    assert eng.capabilities.constrained


async def test_json_object_style_for_llama_cpp_python(server):
    eng = await make(server, response_format="json_object")
    try:
        done = await eng.generate(chat("give a person", json_schema=SCHEMA))
    finally:
        await eng.close()
    assert server.requests[0]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert json.loads(done.text)["age"] == 3


async def test_grammar_refused_unless_server_takes_one(server):
    eng = await make(server)
    try:
        with pytest.raises(InvalidRequest) as ei:
            eng.submit(chat("x", grammar='start: "yes" | "no"'))
        assert ei.value.field == "grammar" and server.base_url in str(ei.value)
    finally:
        await eng.close()
    assert server.requests == []
    eng = await make(server, grammar_field="grammar")
    try:
        await eng.generate(chat("x", grammar='root ::= "yes"'))
    finally:
        await eng.close()
    assert server.requests[0]["grammar"] == 'root ::= "yes"'


# ── bad input ────────────────────────────────────────────────────────────────
async def test_bad_requests_fail_at_submit(server):
    eng = await make(server, context_length=64)
    try:
        with pytest.raises(InvalidRequest):
            eng.submit(GenerationRequest(messages=()))
        with pytest.raises(InvalidRequest) as ei:
            eng.submit(chat("x", temperature=9.0))
        assert ei.value.field == "temperature"
        with pytest.raises(ContextOverflow):
            eng.submit(chat("x", max_tokens=64))
    finally:
        await eng.close()
    assert server.requests == []


def test_constructor_validates():
    with pytest.raises(InvalidRequest) as ei:
        OpenAIEngine("localhost:8000", "m")
    assert ei.value.field == "base_url"
    with pytest.raises(InvalidRequest):
        OpenAIEngine("http://h/v1", "m", max_in_flight=0)
    with pytest.raises(InvalidRequest):
        OpenAIEngine("http://h/v1", "")


# ── errors from the server ───────────────────────────────────────────────────
@pytest.mark.parametrize("status,error,exc,field,needle", [
    (400, {"error": {"message": "temperature too hot", "type": "invalid_request_error",
                     "param": "temperature"}}, InvalidRequest, "temperature", "temperature too hot"),
    (422, {"detail": [{"loc": ["body", "top_p"], "msg": "must be <= 1", "type": "value_error"}]},
     InvalidRequest, "top_p", "must be <= 1"),
    (400, {"error": {"message": "This model's maximum context length is 2048 tokens",
                     "code": "context_length_exceeded"}}, ContextOverflow, None, "maximum context"),
    (404, {"error": "model 'stub-model' not found"}, RemoteError, None, "not found"),
    (500, {"error": {"message": "CUDA out of memory"}}, RemoteError, None, "CUDA out of memory"),
    (503, "upstream unavailable", RemoteError, None, "upstream unavailable"),
])
async def test_http_errors_mapped(server, status, error, exc, field, needle):
    server.script = lambda body: Reply(status=status, error=error)
    t = CountingTransport()
    eng = await make(server, transport=t)
    try:
        with pytest.raises(exc) as ei:
            await eng.generate(chat("x"))
    finally:
        await eng.close()
    err = ei.value
    assert type(err) is exc and needle in str(err)
    if exc is not ContextOverflow:
        assert str(status) in str(err) and server.base_url in str(err)
    assert getattr(err, "field", None) == field
    assert t.calls == 1 and len(server.requests) == 1   # an accepted request is never retried


async def test_unauthorized_hint_names_the_key_variable(server, monkeypatch):
    monkeypatch.delenv("STUB_KEY", raising=False)
    server.script = lambda body: Reply(status=401, error={"error": {"message": "bad key"}})
    eng = await make(server, api_key_env="STUB_KEY")
    try:
        with pytest.raises(RemoteError) as ei:
            await eng.generate(chat("x"))
    finally:
        await eng.close()
    assert "$STUB_KEY" in ei.value.hint and "not set" in ei.value.hint


async def test_api_key_from_env_is_sent(server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test-123")
    eng = await make(server, api_key_env="STUB_KEY")
    try:
        await eng.generate(chat("x"))
    finally:
        await eng.close()
    assert server.headers[0]["authorization"] == "Bearer sk-test-123"


async def test_error_event_mid_stream(server):
    server.script = lambda body: Reply(text="a b", error_event="slot crashed")
    eng = await make(server)
    try:
        h = eng.submit(chat("x"))
        with pytest.raises(RemoteError, match="slot crashed"):
            await h.result()
    finally:
        await eng.close()


async def test_stream_ending_without_finish_is_an_error(server):
    server.script = lambda body: Reply(text="a b", done=False, finish_chunk=False)
    eng = await make(server, stream_usage=False)
    try:
        with pytest.raises(RemoteUnavailable, match="without finishing"):
            await eng.generate(chat("x"))
    finally:
        await eng.close()


# ── retries and timeouts ─────────────────────────────────────────────────────
async def test_connection_refused_retried_then_unavailable():
    port = free_port()
    t = CountingTransport()
    eng = OpenAIEngine(f"http://127.0.0.1:{port}/v1", "m", retries=2, backoff_s=0.01, transport=t)
    try:
        with pytest.raises(RemoteUnavailable) as ei:
            await eng.generate(chat("x"))
    finally:
        await eng.close()
    assert t.calls == 3
    assert f"http://127.0.0.1:{port}/v1" in str(ei.value) and f"127.0.0.1:{port}" in ei.value.hint


async def test_connection_refused_then_server_comes_up():
    port = free_port()
    late = StubServer(port)
    t = CountingTransport()
    eng = OpenAIEngine(late.base_url, "m", retries=8, backoff_s=0.05, transport=t)
    loop = asyncio.get_running_loop()
    try:
        h = eng.submit(chat("hello there"))
        await wait_for(lambda: t.calls >= 1)
        await loop.run_in_executor(None, late.start)
        done = await h.result()
    finally:
        await eng.close()
        late.stop()
    assert done.text == "hello there"
    assert t.calls >= 2 and len(late.requests) == 1


async def test_dropped_connection_not_retried(server):
    server.script = lambda body: Reply(text="a b c d", drop_after=2)
    t = CountingTransport()
    eng = await make(server, transport=t)
    try:
        h = eng.submit(chat("x"))
        got = []
        with pytest.raises(RemoteUnavailable, match="dropped") as ei:
            async for c in h:
                got.append(c.text)
    finally:
        await eng.close()
    assert "".join(got) == "a b" and t.calls == 1 and len(server.requests) == 1
    assert server.base_url in ei.value.hint


async def test_slow_headers_time_out_without_retry(server):
    server.script = lambda body: Reply(delay_s=1.0)
    t = CountingTransport()
    eng = await make(server, read_timeout_s=0.2, transport=t)
    try:
        with pytest.raises(RemoteUnavailable, match="timed out"):
            await eng.generate(chat("x"))
    finally:
        await eng.close()
    assert t.calls == 1


async def test_silent_stream_times_out(server):
    server.script = lambda body: Reply(text="a b c", token_delay_s=1.0)
    eng = await make(server, read_timeout_s=0.2)
    try:
        with pytest.raises(RemoteUnavailable, match="sent nothing for 0.2 s"):
            await eng.generate(chat("x"))
    finally:
        await eng.close()


async def test_whole_request_deadline(server):
    server.script = lambda body: Reply(text="a b c d e f g h", token_delay_s=0.1)
    eng = await make(server, request_timeout_s=0.3)
    try:
        with pytest.raises(RemoteUnavailable, match="within 0.3 s"):
            await eng.generate(chat("x"))
    finally:
        await eng.close()


# ── cancel, close ────────────────────────────────────────────────────────────
async def test_cancel_aborts_the_stream(server):
    server.script = lambda body: Reply(text="a b c d e f g h i j", token_delay_s=0.05)
    eng = await make(server)
    try:
        h = eng.submit(chat("x"))
        seen = []
        async for c in h:
            seen.append(c.text)
            if len(seen) == 2:
                assert eng.cancel(h.request_id)
        done = await h.result()
        await wait_for(lambda: server.aborted == [0])
        assert not eng.cancel(h.request_id)
    finally:
        await eng.close()
    assert done.finish_reason == "cancelled" and done.text == "a b"
    assert done.usage.completion_tokens == 2 and eng.stats().active == 0


async def test_cancel_queued_request_never_sends_it(server):
    server.script = lambda body: Reply(text="a b c", token_delay_s=0.05)
    eng = await make(server, max_in_flight=1)
    try:
        first = eng.submit(chat("first"))
        second = eng.submit(chat("second"))
        assert eng.cancel(second.request_id)
        assert (await second.result()).finish_reason == "cancelled"
        await first.result()
    finally:
        await eng.close()
    assert [b["messages"][0]["content"] for b in server.requests] == ["first"]


async def test_close_fails_pending_requests(server):
    server.script = lambda body: Reply(text="a b c d e", token_delay_s=0.2)
    eng = await make(server, max_in_flight=1)
    h1, h2 = eng.submit(chat("one")), eng.submit(chat("two"))
    await wait_for(lambda: server.requests)
    await eng.close()
    for h in (h1, h2):
        with pytest.raises(Cancelled):
            await h.result()
    with pytest.raises(EngineError):
        eng.submit(chat("late"))


# ── admission control ────────────────────────────────────────────────────────
async def test_admission_limit_holds(server):
    server.script = lambda body: Reply(text="a b c d", token_delay_s=0.03)
    eng = await make(server, max_in_flight=2)
    try:
        hs = [eng.submit(chat(f"r{i}")) for i in range(6)]
        st = eng.stats()
        assert (st.active, st.waiting) == (2, 4)
        states = [v.state for v in eng.views()]
        assert states.count(SeqState.DECODING) == 2 and states.count(SeqState.WAITING) == 4
        results = await asyncio.gather(*(h.result() for h in hs))
    finally:
        await eng.close()
    assert all(r.text == "a b c d" for r in results)
    assert server.max_active == 2 and len(server.requests) == 6
    order = [b["messages"][0]["content"] for b in server.requests]
    assert sorted(order[:2]) == ["r0", "r1"] and sorted(order[2:]) == ["r2", "r3", "r4", "r5"]


async def test_priority_admission_order(server):
    server.script = lambda body: Reply(text="a b c", token_delay_s=0.03)
    eng = await make(server, max_in_flight=1, policy=PriorityAdmission())
    try:
        hs = [eng.submit(chat("first")), eng.submit(chat("idle", priority=10)),
              eng.submit(chat("normal")), eng.submit(chat("urgent", priority=-10))]
        await asyncio.gather(*(h.result() for h in hs))
    finally:
        await eng.close()
    assert [b["messages"][0]["content"] for b in server.requests] == ["first", "urgent", "normal", "idle"]


class HoldBack:
    """Admits nothing until ``open`` is set; records what it saw."""

    def __init__(self) -> None:
        self.open = False
        self.seen: list[int] = []

    def decide(self, seqs, budget):
        self.seen.append(len(seqs))
        if not self.open:
            return StepDecision(reason="hold")
        order = sorted(seqs, key=lambda s: s.arrival_s)
        return StepDecision(run=[s.request_id for s in order], reason="open")


async def test_policy_controls_admission_and_step_reapplies(server):
    policy = HoldBack()
    eng = await make(server, policy=policy, max_in_flight=3)
    try:
        hs = [eng.submit(chat(f"r{i}")) for i in range(2)]
        await asyncio.sleep(0.05)
        assert server.requests == [] and eng.stats().waiting == 2
        policy.open = True
        eng.step()
        await asyncio.gather(*(h.result() for h in hs))
    finally:
        await eng.close()
    assert len(server.requests) == 2 and policy.seen[:2] == [1, 2]
    assert eng.decision_log[-1].reason == "open"


def _continuing(full: str, base: str):
    """A server that continues ``full`` from wherever the prompt (base + partial) left it."""

    def script(body: dict) -> Reply:
        if "prompt" in body:
            done = body["prompt"][len(base):]
        else:
            last = body["messages"][-1]
            done = last["content"] if last["role"] == "assistant" else ""
        return Reply(text=full[len(done):], token_delay_s=0.03)
    return script


class UrgentFirst:
    """Run the most urgent requests; swap out running ones that fall outside the budget."""

    def decide(self, seqs, budget):
        order = sorted(seqs, key=lambda s: (s.priority, s.arrival_s))
        run = order[: budget.max_active]
        out = [s.request_id for s in order[budget.max_active:] if s.state == SeqState.DECODING]
        return StepDecision(run=[s.request_id for s in run], swap_out=out, reason="urgent-first")


async def test_preempted_prompt_request_resumes_exactly(server):
    full = " one two three four five six seven eight"
    server.script = _continuing(full, "count:")
    eng = await make(server, max_in_flight=1, policy=UrgentFirst())
    try:
        low = eng.submit(prompt("count:", priority=5, max_tokens=20))
        chunks = []
        async for c in low:
            chunks.append(c)
            if len(chunks) == 3:
                urgent = eng.submit(prompt("count:", priority=-5))
        done = await low.result()
        hi = await urgent.result()
    finally:
        await eng.close()
    assert done.text == full and hi.text == full
    assert done.usage.preemptions == 1 and done.usage.completion_tokens == 8
    assert [c.index for c in chunks] == list(range(8))
    prompts = [b["prompt"] for b in server.requests]
    assert prompts[0] == "count:" and prompts[1] == "count:"
    assert prompts[2] == "count: one two three" and server.requests[2]["max_tokens"] == 17
    assert server.aborted == [0]


async def test_chat_preemption_only_with_chat_resume(server):
    full = "alpha beta gamma delta epsilon"
    server.script = _continuing(full, "")
    # without chat_resume the running chat request is not preempted
    eng = await make(server, max_in_flight=1, policy=UrgentFirst())
    try:
        low = eng.submit(chat("go", priority=5))
        await wait_for(lambda: eng.stats().tokens_generated >= 2)
        urgent = eng.submit(chat("go", priority=-5))
        assert (await low.result()).usage.preemptions == 0
        await urgent.result()
    finally:
        await eng.close()
    assert len(server.requests) == 2
    server.reset()
    server.script = _continuing(full, "")
    eng = await make(server, max_in_flight=1, policy=UrgentFirst(),
                     chat_resume={"continue_final_message": True, "add_generation_prompt": False})
    try:
        low = eng.submit(chat("go", priority=5))
        await wait_for(lambda: eng.stats().tokens_generated >= 2)
        urgent = eng.submit(chat("go", priority=-5))
        done = await low.result()
        await urgent.result()
    finally:
        await eng.close()
    assert done.text == full and done.usage.preemptions == 1
    resumed = server.requests[2]
    assert resumed["messages"][-1]["role"] == "assistant" and resumed["continue_final_message"] is True


async def test_run_omitting_an_in_flight_request_preempts_it(server):
    full = " a b c d e f"
    server.script = _continuing(full, "p:")
    policy = HoldBack()
    policy.open = True
    eng = await make(server, policy=policy)
    try:
        h = eng.submit(prompt("p:"))
        await wait_for(lambda: eng.stats().tokens_generated >= 2)
        policy.open = False
        eng.step()                                    # run is empty now: the stream is aborted
        assert [v.state for v in eng.views()] == [SeqState.SWAPPED]
        await wait_for(lambda: server.aborted == [0])
        policy.open = True
        eng.step()
        done = await h.result()
    finally:
        await eng.close()
    assert done.text == full and done.usage.preemptions == 1 and len(server.requests) == 2


async def test_suspend_resume_continues_exactly(server):
    full = " one two three four five six"
    server.script = _continuing(full, "n:")
    eng = await make(server)
    try:
        h = eng.submit(prompt("n:"))
        seen = 0
        async for _ in h:
            seen += 1
            if seen == 2:
                await eng.suspend(h.request_id, to_disk=True)
                assert eng.views() == [] and eng.stats().waiting == 1   # held: invisible to the policy
                await asyncio.sleep(0.05)
                assert len(server.requests) == 1
                await eng.resume(h.request_id)
        done = await h.result()
        with pytest.raises(EngineError):
            await eng.suspend(h.request_id)
        with pytest.raises(EngineError):
            await eng.resume("nope")
    finally:
        await eng.close()
    assert done.text == full and done.usage.preemptions == 1
    assert server.requests[1]["prompt"] == "n: one two"


async def test_suspend_chat_needs_chat_resume(server):
    server.script = lambda body: Reply(text="a b c d e f", token_delay_s=0.05)
    eng = await make(server)
    try:
        h = eng.submit(chat("x"))
        with pytest.raises(EngineError) as ei:
            await eng.suspend(h.request_id)
        assert "chat_resume" in ei.value.hint
        await h.result()
    finally:
        await eng.close()


async def test_prompt_surely_over_the_context_fails_at_submit(server):
    eng = await make(server, context_length=512)
    try:
        with pytest.raises(ContextOverflow, match="at least"):
            eng.submit(prompt("word " * 1000, max_tokens=8))
        await eng.generate(prompt("word " * 300, max_tokens=8))   # may fit: the server decides
    finally:
        await eng.close()


# ── embeddings, capabilities, wire helpers ───────────────────────────────────
async def test_embeddings(server):
    eng = await make(server)
    try:
        vecs = await eng.embed(["aa", "bbb", "cccc"])
        with pytest.raises(InvalidRequest):
            await eng.embed([])
    finally:
        await eng.close()
    assert vecs == [[2.0, 2.0, 1.0], [3.0, 0.0, 1.0], [4.0, 0.0, 1.0]]   # stub answers in reverse
    assert server.paths == ["/v1/embeddings"] and server.requests[0]["input"] == ["aa", "bbb", "cccc"]


async def test_embeddings_disabled():
    eng = OpenAIEngine("http://127.0.0.1:9/v1", "m", embeddings=False)
    assert not eng.capabilities.embeddings
    with pytest.raises(EngineError):
        await eng.embed(["x"])


def test_capabilities():
    caps = OpenAIEngine("http://127.0.0.1:9/v1", "m", max_in_flight=4, context_length=4096).capabilities
    assert (caps.batching, caps.snapshots, caps.constrained, caps.embeddings) == (True, False, True, True)
    assert caps.max_active == 4 and caps.context_length == 4096


async def test_snapshots_not_supported():
    eng = OpenAIEngine("http://127.0.0.1:9/v1", "m")
    with pytest.raises(EngineError):
        await eng.suspend("x")


@pytest.mark.parametrize("content,expected", [
    (b'{"error": {"message": "bad", "param": "stop", "code": "x"}}', ("bad", "stop", "x")),
    (b'{"error": "plain"}', ("plain", None, None)),
    (b'{"detail": "nope"}', ("nope", None, None)),
    (b'{"detail": [{"loc": ["body", "messages", 0], "msg": "missing"}]}',
     ("messages.0: missing", "messages.0", None)),
    (b"Internal Server Error\ntrace", ("Internal Server Error", None, None)),
    (b"", ("no details", None, None)),
])
def test_error_fields(content, expected):
    assert wire.error_fields(content) == expected


def test_request_body_resume_forms():
    req = GenerationRequest(prompt="p:", params=SamplingParams(max_tokens=10))
    body = wire.request_body(req, "m", generated_text=" ab", generated_tokens=2)
    assert body["prompt"] == "p: ab" and body["max_tokens"] == 8
    req = GenerationRequest(messages=({"role": "user", "content": "hi"},))
    body = wire.request_body(req, "m", generated_text="par", chat_resume={"continue_final_message": True},
                             extra_body={"keep_alive": "5m"})
    assert body["messages"][-1] == {"role": "assistant", "content": "par"}
    assert body["continue_final_message"] is True and body["keep_alive"] == "5m"


# ── against the project's own OpenAI-compatible API (/v1, FakeEngine behind the kernel) ─
async def test_against_llmos_own_v1_api(config):
    from llmos.api.app import create_app, lifespan_services
    from llmos.hal.fake import FakeHAL
    from llmos.llm.fake import FakeEngine
    from llmos.tools.registry import default_registry

    fake = FakeEngine("alpha beta gamma delta", model="fake")
    app = create_app(config, engines={"fake": fake}, tools=default_registry(), hal=FakeHAL(),
                     preload_models=False)
    async with lifespan_services(app) as svc:
        eng = OpenAIEngine("http://localhost/v1", "fake", api_key=svc.tokens.admin_token(),
                           transport=httpx.ASGITransport(app=app))
        try:
            done = await eng.generate(chat("hello", max_tokens=3))
            full = await eng.generate(prompt("p", stop=["gamma"]))
        finally:
            await eng.close()
        eng = OpenAIEngine("http://localhost/v1", "no-such-model", api_key=svc.tokens.admin_token(),
                           transport=httpx.ASGITransport(app=app))
        try:
            with pytest.raises(EngineError) as ei:
                await eng.generate(chat("hello"))
        finally:
            await eng.close()
        eng = OpenAIEngine("http://localhost/v1", "fake", api_key="wrong",
                           transport=httpx.ASGITransport(app=app))
        try:
            with pytest.raises(RemoteError) as bad_key:
                await eng.generate(chat("hello"))
        finally:
            await eng.close()
    assert type(ei.value) is RemoteError and "404" in str(ei.value) and "no-such-model" in str(ei.value)
    assert "401" in str(bad_key.value) and "refused the API key" in bad_key.value.hint
    assert done.text == "alpha beta gamma" and done.finish_reason == "length"
    assert done.usage.completion_tokens == 3 and done.usage.prompt_tokens > 0
    assert full.text == "alpha beta " and full.finish_reason == "stop"
