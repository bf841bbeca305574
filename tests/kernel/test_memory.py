from __future__ import annotations

from llmos.kernel.memory import CONTEXT_KEEP


async def test_notes_put_get_search_delete(kernel):
    for key, value in [("colour", "my favourite colour is blue"), ("pet", "the cat is called Miso"),
                       ("trip", "flight to Lisbon on Friday")]:
        assert (await kernel.syscall("root", "memory.put", {"key": key, "value": value})).ok
    assert (await kernel.syscall("root", "memory.get", {"key": "pet"})).value["value"] == "the cat is called Miso"
    res = (await kernel.syscall("root", "memory.search", {"query": "what is my cat called?"})).value["results"]
    assert res[0]["key"] == "pet"
    await kernel.syscall("root", "memory.put", {"key": "pet", "value": "the dog is called Rex"})
    res = (await kernel.syscall("root", "memory.search", {"query": "Miso"})).value["results"]
    assert res == []
    res = (await kernel.syscall("root", "memory.search", {"query": "Rex"})).value["results"]
    assert [r["key"] for r in res] == ["pet"]
    assert (await kernel.syscall("root", "memory.delete", {"key": "pet"})).ok
    assert (await kernel.syscall("root", "memory.get", {"key": "pet"})).error.code == "not_found"


async def test_search_text_is_never_fts_syntax(kernel):
    await kernel.syscall("root", "memory.put", {"key": "k", "value": "NEAR AND OR NOT quotes"})
    for q in ('"unbalanced', "a OR", "NEAR(", "*", "k:v", "-x"):
        res = await kernel.syscall("root", "memory.search", {"query": q})
        assert res.ok or res.error.code == "invalid_argument", (q, res.error)
    assert (await kernel.syscall("root", "memory.search", {"query": "?!"})).error.field == "query"


async def test_memory_is_per_agent(kernel):
    await kernel.syscall("root", "agent.create", {"name": "a", "capabilities": {"syscalls": ["memory.*"]}})
    await kernel.syscall("root", "memory.put", {"key": "secret", "value": "root only"})
    assert (await kernel.syscall("a", "memory.get", {"key": "secret"})).error.code == "not_found"
    assert (await kernel.syscall("a", "memory.search", {"query": "root"})).value["results"] == []
    await kernel.syscall("a", "memory.put", {"key": "secret", "value": "a's"})
    assert (await kernel.syscall("root", "memory.get", {"key": "secret"})).value["value"] == "root only"


async def test_context_append_and_trim(kernel):
    for i in range(CONTEXT_KEEP + 5):
        kernel.memory.append("root", "user", f"m{i}")
    await kernel.journal.durable()
    msgs = (await kernel.syscall("root", "memory.context", {"limit": 500})).value["messages"]
    assert len(msgs) == CONTEXT_KEEP and msgs[-1]["content"] == f"m{CONTEXT_KEEP + 4}"
    assert msgs[0]["content"] == "m5"
    res = await kernel.syscall("root", "memory.append", {"role": "wizard", "content": "x"})
    assert res.error.field == "role"
    res = await kernel.syscall("root", "memory.put", {"key": "k", "value": "x" * (70 << 10)})
    assert res.error.field == "value"
