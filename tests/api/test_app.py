"""The app's guard rails: JSON errors for every bad request, body limits, static files."""

from __future__ import annotations

import pytest

from llmos import params


@pytest.mark.parametrize("method,path,body,status,code,field", [
    ("POST", "/api/v1/processes", {"kind": "bogus", "spec": {}}, 422, "invalid_argument", "kind"),
    ("POST", "/api/v1/processes", {"kind": "llm", "spec": {}, "priority": 99}, 422, "invalid_argument",
     "priority"),
    ("POST", "/api/v1/processes", {"kind": "llm", "spec": {}, "extra": 1}, 422, "invalid_argument",
     "extra"),
    ("POST", "/api/v1/processes", {"kind": "llm", "spec": {"prompt": "x", "bogus": 1}}, 400,
     "invalid_argument", "spec.bogus"),
    ("POST", "/api/v1/processes/1/nice", {"priority": "high"}, 422, "invalid_argument", "priority"),
    ("GET", "/api/v1/processes/999", None, 404, "not_found", None),
    ("GET", "/api/v1/processes/0", None, 422, "invalid_argument", "path.pid"),
    ("POST", "/api/v1/syscall", {"name": "no.such", "args": {}}, 404, "unknown_syscall", None),
    ("POST", "/api/v1/syscall", {"name": "proc.get", "args": {"pid": "one"}}, 400, "invalid_argument",
     "pid"),
    ("POST", "/api/v1/timers", {"message": "hi"}, 400, "invalid_argument", "in_s"),
    ("GET", "/api/v1/nowhere", None, 404, "not_found", None),
    ("DELETE", "/api/v1/tools", None, 405, "method_not_allowed", None),
])
async def test_bad_requests_get_json_errors(api, method, path, body, status, code, field):
    r = await api.client.request(method, path, json=body)
    assert r.status_code == status, r.text
    data = r.json()
    assert data["error"] == code and data["message"]
    if field is not None:
        assert data["field"] == field
        assert data.get("expected")
    assert "Traceback" not in r.text


async def test_invalid_json_names_the_body(api):
    r = await api.client.post("/api/v1/processes", content=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["field"] == "body" and "JSON" in r.json()["expected"]


async def test_body_over_the_limit_is_413(api):
    big = b'{"name": "proc.list", "args": {"x": "' + b"a" * params.API_MAX_BODY_BYTES + b'"}}'
    r = await api.client.post("/api/v1/syscall", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    async def chunks():                                  # no Content-Length: counted as it arrives
        for _ in range(params.API_MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    r = await api.client.post("/api/v1/syscall", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"


async def test_openai_routes_use_the_openai_error_envelope(api):
    r = await api.client.post("/v1/chat/completions", json={"model": "fake", "messages": []})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"] == "messages" and err["type"] == "invalid_request_error" and err["message"]


async def test_dashboard_is_served(api):
    r = await api.client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/dashboard/app.js" in r.text
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        r = await api.client.get(f"/dashboard/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    r = await api.client.get("/dashboard/../../etc/passwd")
    assert r.status_code == 404
    r = await api.client.get("/dashboard/secret.txt")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_openapi_document_lists_every_route(api):
    doc = (await api.client.get("/openapi.json")).json()
    paths = doc["paths"]
    for p in ("/api/v1/processes", "/api/v1/processes/{pid}", "/api/v1/processes/{pid}/kill",
              "/api/v1/processes/{pid}/nice", "/api/v1/runs", "/api/v1/runs/{run_id}/confirm",
              "/api/v1/runs/{run_id}/reject", "/api/v1/runs/{run_id}/plan", "/api/v1/agents",
              "/api/v1/agents/{agent}/tokens", "/api/v1/tools", "/api/v1/timers", "/api/v1/alloc",
              "/api/v1/events", "/v1/chat/completions", "/v1/completions", "/v1/models",
              "/v1/embeddings"):
        assert p in paths, p
    spawn = paths["/api/v1/processes"]["post"]
    assert "401" in spawn["responses"] and "422" in spawn["responses"]
