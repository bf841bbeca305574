"""Conversations: turns within a model's token budget, older turns summarized by a
low-priority generation, originals kept, clear errors for bad input."""

from __future__ import annotations

import pytest

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.conversation import MESSAGE_OVERHEAD, Window
from llmos.kernel.sys_conversation import SUMMARY_PRIORITY
from llmos.llm.fake import FakeEngine

from .conftest import audit_rows, make_agent

SUMMARY = "SUMMARY: the person likes owls"


def _script(req):
    if req.messages and "You condense conversations" in req.messages[0]["content"]:
        return SUMMARY
    return "ok " + " ".join(["word"] * 10)


@pytest.fixture
async def small(config, clock, registry):
    """A kernel whose engine has a 200-token context."""
    engine = FakeEngine(_script, context_length=200)
    k = await Kernel.boot(config, engines={"fake": engine}, tools=registry, clock=clock, hal=FakeHAL(clock))
    yield k, engine
    await k.shutdown(grace_s=0.5)


async def _ok(k, agent, name, args):
    res = await k.syscall(agent, name, args)
    assert res.ok, res.error
    return res.value


def _tokens(engine, messages):
    return sum(engine.count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages)


async def test_long_conversation_stays_within_budget_and_keeps_originals(small):
    k, engine = small
    conv = await _ok(k, "root", "conversation.open", {"system": "Be brief."})
    said = [f"message {i}: " + " ".join(f"w{i}x{j}" for j in range(15)) for i in range(12)]
    folded = 0
    for text in said:
        out = await _ok(k, "root", "conversation.say", {"id": conv["id"], "content": text, "max_tokens": 40})
        folded += out["folded"]
        assert out["window_tokens"] <= out["budget_tokens"] == 200 - 40
        req = engine.requests[-1]                                  # the reply's prompt
        assert _tokens(engine, req.messages) <= 160
        assert req.messages[-1]["content"] == text
    assert folded > 0
    last = engine.requests[-1].messages
    assert SUMMARY in last[0]["content"] and last[0]["content"].startswith("Be brief.")
    assert all(m["content"] != said[0] for m in last)              # the summary replaced the oldest turns
    summaries = [r for r in engine.requests if "You condense" in r.messages[0]["content"]]
    assert summaries and said[0] in summaries[0].messages[1]["content"]
    hist = await _ok(k, "root", "conversation.history", {"id": conv["id"]})
    users = [t["content"] for t in hist["turns"] if t["role"] == "user"]
    assert users == said                                           # every original retrievable
    assert hist["turns"][0]["folded"] and not hist["turns"][-1]["folded"]
    assert hist["summaries"] and hist["summaries"][-1]["content"] == SUMMARY
    pids = [s["pid"] for s in hist["summaries"]]
    procs = [k.procs.get(pid) for pid in pids]
    assert all(p.kind == "llm" and p.priority == SUMMARY_PRIORITY and p.owner == "root" for p in procs)


async def test_reply_is_an_audited_kernel_process(kernel):
    conv = await _ok(kernel, "root", "conversation.open", {})
    out = await _ok(kernel, "root", "conversation.say", {"id": conv["id"], "content": "hello"})
    assert out["text"] == "the answer is 42" and out["folded"] == 0
    p = kernel.procs.get(out["pid"])
    assert p.kind == "llm" and p.owner == "root" and p.state.name == "SUCCEEDED"
    calls = [r[1] for r in audit_rows(kernel, "root")]
    assert "conversation.open" in calls and "conversation.say" in calls


async def test_streamed_reply(kernel):
    conv = await _ok(kernel, "root", "conversation.open", {})
    items = [it async for it in kernel.syscall_stream("root", "conversation.say",
                                                      {"id": conv["id"], "content": "hi", "stream": True})]
    assert items[0]["type"] == "started"
    text = "".join(it["text"] for it in items if it["type"] == "chunk")
    assert text == "the answer is 42" and items[-1]["ok"]


@pytest.mark.parametrize("args, field, words", [
    ({"content": ""}, "content", "empty"),
    ({"content": "   \n"}, "content", "empty"),
    ({"content": "x", "id": "conv-nope"}, None, "no conversation 'conv-nope'"),
    ({"content": "x", "max_tokens": 0}, "max_tokens", "max_tokens"),
    ({"content": "x", "max_tokens": 5000}, "max_tokens", "leaves no room"),
])
async def test_bad_input_is_a_clear_error(kernel, args, field, words):
    conv = await _ok(kernel, "root", "conversation.open", {})
    res = await kernel.syscall("root", "conversation.say", {"id": conv["id"], **args})
    assert not res.ok and words in res.error.message
    if field:
        assert res.error.field == field


async def test_message_too_long_for_the_window(small):
    k, _ = small
    conv = await _ok(k, "root", "conversation.open", {})
    res = await k.syscall("root", "conversation.say", {"id": conv["id"], "content": "w " * 300,
                                                       "max_tokens": 40})
    assert not res.ok and res.error.field == "content" and "tokens" in res.error.message
    hist = await _ok(k, "root", "conversation.history", {"id": conv["id"]})
    assert hist["turns"] == []                                     # nothing half-written


async def test_unknown_model_at_open(kernel):
    res = await kernel.syscall("root", "conversation.open", {"model": "no-such-model"})
    assert not res.ok and "no-such-model" in res.error.message


async def test_another_agents_conversation_is_unknown(kernel):
    await make_agent(kernel, "mallory", syscalls=["conversation.*", "llm.generate"])
    conv = await _ok(kernel, "root", "conversation.open", {})
    for name, extra in (("conversation.say", {"content": "hi"}), ("conversation.history", {})):
        res = await kernel.syscall("mallory", name, {"id": conv["id"], **extra})
        assert not res.ok and res.error.code == "not_found"
    assert (await _ok(kernel, "mallory", "conversation.list", {}))["conversations"] == []


def test_window_estimate_without_tokenizer():
    w = Window(1000, 100)                         # no tokenizer: chars/4, 90% of the context
    assert not w.exact and w.budget == 900 - 100
    assert w.count("abcdefgh") == 2 and w.count("abcdefghi") == 3
    assert w.to_fold(10, 0, [100, 100], 50) == 0
    assert w.to_fold(10, 0, [400, 300, 100], 50) == 1    # room: 800 - 10 - (200 + 4) for the summary
    assert w.to_fold(10, 0, [300, 300, 300], 50) == 2
    assert w.clip("word " * 100, 10).endswith("[…]") and w.count(w.clip("word " * 100, 10)) <= 10
