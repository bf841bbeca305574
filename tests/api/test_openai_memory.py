"""``X-LLMOS-Memory: k`` on /v1/chat/completions (issue 13, item 6): the calling agent's k
memories nearest the last user message go into the system message, labelled as recalled
memory; only the caller's own memory; with a conversation, in that turn's system prompt
only; bad values are a 400 naming the header."""

from __future__ import annotations

from llmos.api.openai_memory import LABEL
from llmos.llm.embed import FakeEmbedder


def chat(content: str, system: str | None = None) -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return {"model": "fake", "messages": msgs, "max_tokens": 8}


async def remember(api, agent: str, text: str) -> int:
    res = await api.svc.kernel.syscall(agent, "memory.remember", {"text": text})
    assert res.ok, res.error
    return res.value["id"]


async def test_memory_is_attached_to_the_system_message_when_asked(api):
    api.svc.kernel.memory.embedder = FakeEmbedder()
    dog = await remember(api, "root", "my dog is called Pixel and loves the beach")
    await remember(api, "root", "the dentist appointment is on Monday")
    r = await api.client.post("/v1/chat/completions", json=chat("what is my dog called?"),
                              headers={"X-LLMOS-Memory": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["llmos"]["memories"] == [dog]
    sent = api.engine.requests[-1].messages
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith(LABEL)
    assert '"my dog is called Pixel and loves the beach"' in sent[0]["content"] and "dentist" not in sent[0]["content"]
    assert sent[-1] == {"role": "user", "content": "what is my dog called?"}
    # an existing system message keeps its text first
    r = await api.client.post("/v1/chat/completions", json=chat("my dog?", system="Be brief."),
                              headers={"X-LLMOS-Memory": "2"})
    assert r.status_code == 200 and len(r.json()["llmos"]["memories"]) == 2
    sent = api.engine.requests[-1].messages
    assert [m["role"] for m in sent] == ["system", "user"] and sent[0]["content"].startswith("Be brief.\n\n" + LABEL)
    # without the header (or with 0) nothing is attached
    for headers in ({}, {"X-LLMOS-Memory": "0"}):
        r = await api.client.post("/v1/chat/completions", json=chat("what is my dog called?"), headers=headers)
        assert r.status_code == 200 and "memories" not in r.json()["llmos"]
        assert list(api.engine.requests[-1].messages) == [{"role": "user", "content": "what is my dog called?"}]


async def test_only_the_callers_own_memory_is_attached(api):
    api.svc.kernel.memory.embedder = FakeEmbedder()
    await remember(api, "root", "the admin password hint is a purple giraffe")
    tok = (await api.client.post("/api/v1/agents", json={"name": "eve", "capabilities": {
        "syscalls": ["llm.generate", "memory.*"]}})).json()["token"]
    async with api.as_agent(tok) as eve:
        r = await eve.post("/v1/chat/completions", json=chat("what is the admin password hint?"),
                           headers={"X-LLMOS-Memory": "5"})
    assert r.status_code == 200, r.text
    assert r.json()["llmos"]["memories"] == []
    assert "giraffe" not in str(api.engine.requests[-1].messages)


async def test_bad_memory_header_is_a_400_naming_it(api):
    for value in ("x", "-1", "21", "1.5", ""):
        r = await api.client.post("/v1/chat/completions", json=chat("hi"), headers={"X-LLMOS-Memory": value})
        assert r.status_code == 400, (value, r.text)
        assert r.json()["error"]["param"] == "X-LLMOS-Memory"


async def test_a_conversation_turn_gets_memory_in_its_system_prompt_only(api):
    api.svc.kernel.memory.embedder = FakeEmbedder()
    dog = await remember(api, "root", "my dog is called Pixel and loves the beach")
    conv = (await api.svc.kernel.syscall("root", "conversation.open", {"system": "You are kind."})).value["id"]
    r = await api.client.post("/v1/chat/completions", json=chat("what is my dog called?"),
                              headers={"X-LLMOS-Memory": "1", "X-LLMOS-Conversation": conv})
    assert r.status_code == 200, r.text
    assert r.json()["llmos"]["memories"] == [dog]
    sent = api.engine.requests[-1].messages
    assert sent[0]["content"].startswith("You are kind.") and LABEL in sent[0]["content"] and "Pixel" in sent[0]["content"]
    r = await api.client.post("/v1/chat/completions", json=chat("and the cat?"),
                              headers={"X-LLMOS-Conversation": conv})
    assert r.status_code == 200
    sent = api.engine.requests[-1].messages
    assert LABEL not in sent[0]["content"] and "Pixel" not in str(sent)       # not stored in the conversation
    hist = (await api.svc.kernel.syscall("root", "conversation.history", {"id": conv})).value
    assert "Pixel" not in str(hist)
