"""``llmos.sdk.Client`` / ``AsyncClient`` against a live daemon: values back, errors as classes."""

from __future__ import annotations

import threading

import httpx
import pytest

from llmos import errors as E
from llmos.sdk import AsyncClient, Client, DaemonError
from llmos.sdk.client import parse_sse
from llmos.sdk.errors import from_body


@pytest.fixture
def client(daemon):
    with Client(daemon.url, token=daemon.token) as c:
        yield c


def test_syscalls_and_processes(client):
    assert client.health()["ok"]
    v = client.syscall("llm.generate", {"prompt": "alpha beta"})
    assert v["text"] == "alpha beta" and v["pid"] >= 1
    p = client.spawn("llm", {"prompt": "gamma"}, priority=3)
    done = client.wait(p["pid"], timeout=10)
    assert done["state"] == "succeeded" and done["result"]["text"] == "gamma"
    assert p["pid"] in [x["pid"] for x in client.ps(state="succeeded")]
    r = client.spawn("run", {"title": "held"})
    assert client.nice(r["pid"], -4)["priority"] == -4
    assert client.kill(r["pid"], "done with it")["state"] == "killed"


def test_errors_are_the_error_tree(client, daemon):
    with pytest.raises(E.NotFound):
        client.get_process(424242)
    with pytest.raises(E.InvalidArgument) as e:
        client.syscall("proc.get", {"pid": "x"})
    assert e.value.field == "pid" and e.value.expected
    with pytest.raises(E.UnknownSyscall):
        client.syscall("no.such")
    with pytest.raises(DaemonError) as e:
        Client(daemon.url, token="llmos-bad").ps()
    assert e.value.status == 401 and e.value.code == "unauthorized"
    with pytest.raises(E.RemoteUnavailable):
        Client("http://127.0.0.1:9", token="x", timeout=2).health()


def test_agents_tokens_and_permission(client, daemon):
    a = client.create_agent("sdk-agent", {"syscalls": ["proc.*", "llm.generate"]})
    with Client(daemon.url, token=a["token"]) as agent:
        assert agent.syscall("llm.generate", {"prompt": "mine"})["text"] == "mine"
        with pytest.raises(E.PermissionDenied) as e:
            agent.tools()
        assert e.value.reason
    extra = client.create_token("sdk-agent", "second")
    assert [t["id"] for t in client.tokens("sdk-agent")][-1] == extra["id"]
    client.revoke_token("sdk-agent", extra["id"])
    assert "sdk-agent" in [x["id"] for x in client.agents()]


def test_memory_timers_tools(client):
    client.memory_put("k1", "the quick brown fox")
    assert client.memory_get("k1")["value"] == "the quick brown fox"
    assert [r["key"] for r in client.memory_search("fox")] == ["k1"]
    t = client.set_timer("ping", in_s=300)
    assert t["id"] in [x["id"] for x in client.timers()]
    client.cancel_timer(t["id"])
    assert any(x["name"] == "files.read" for x in client.tools())


def test_events_stream(client, daemon):
    got: list[dict] = []

    def watch() -> None:
        with Client(daemon.url, token=daemon.token) as w:
            for ev in w.events(types=["proc"]):
                got.append(ev)
                if ev.get("state") == "succeeded":
                    return

    t = threading.Thread(target=watch)
    t.start()
    import time

    time.sleep(0.3)                     # let the subscription open
    pid = client.syscall("llm.generate", {"prompt": "streamed"})["pid"]
    t.join(10)
    assert not t.is_alive()
    assert any(ev["type"] == "process" and ev["pid"] == pid and ev["state"] == "succeeded" for ev in got)
    assert all(ev["type"].startswith("proc") for ev in got)


def test_chat_and_openai_helper(client):
    r = client.chat([{"role": "user", "content": "via the sdk"}], model="fake", priority=2)
    assert r["choices"][0]["message"]["content"] == "via the sdk"
    oai = client.openai(max_retries=0)
    assert oai.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}]) \
        .choices[0].message.content == "x"


async def test_async_client(daemon):
    async with AsyncClient(daemon.url, token=daemon.token) as c:
        v = await c.syscall("llm.generate", {"prompt": "async hello"})
        assert v["text"] == "async hello"
        assert (await c.get_process(v["pid"]))["state"] == "succeeded"
        with pytest.raises(E.NotFound):
            await c.get_process(999999)


def test_parse_sse():
    p = parse_sse()
    lines = ["retry: 2000", "", ": keep-alive", "", "id: 3", "event: process",
             'data: {"type": "process", "pid": 1}', "", "data: not json", ""]
    out = [ev for ev in (p.feed(x) for x in lines) if ev is not None]
    assert out == [{"type": "process", "pid": 1}, {"type": "message", "data": "not json"}]


@pytest.mark.parametrize("body,cls", [
    ({"error": "not_found", "message": "no pid"}, E.NotFound),
    ({"error": "invalid_argument", "message": "bad", "field": "x", "expected": "y"}, E.InvalidArgument),
    ({"error": "permission_denied", "message": "no", "reason": "caps"}, E.PermissionDenied),
    ({"error": "busy", "message": "full", "retry_after": 2.0}, E.Busy),
    ({"error": {"message": "m", "type": "invalid_request_error", "param": "p", "code": "invalid_argument"}},
     E.InvalidArgument),
    ({"error": "too_large", "message": "big"}, DaemonError),
    ("<html>oops</html>", DaemonError),
])
def test_from_body(body, cls):
    err = from_body(400, body)
    assert type(err) is cls
    if isinstance(body, dict) and body.get("field"):
        assert err.field == "x" and err.expected == "y"
    if cls is E.Busy:
        assert err.retry_after == 2.0
    if cls is E.PermissionDenied:
        assert err.reason == "caps"


def test_transport_injection_for_in_process_use():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0k"
        return httpx.Response(200, json={"ok": True, "value": {"echo": request.url.path}})

    with Client("http://x", token="t0k", transport=httpx.MockTransport(handler)) as c:
        assert c.syscall("proc.list") == {"echo": "/api/v1/syscall"}
