"""The workflow routes in the daemon: compile, approve, the webhook trigger (401 without a
token), show with the run's explanation, an unknown workflow (404)."""

from __future__ import annotations

import asyncio
import json

import httpx

from llmos.api.app import create_app, lifespan_services
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry


def model(req) -> str:
    if "task" in (req.json_schema or {}).get("properties", {}):
        return json.dumps({"trigger": "webhook", "cron": "", "timezone": "", "folder": "", "pattern": "",
                           "after": "", "task": "count the lines of poem.txt"})
    return json.dumps({"steps": [{"tool": "files.count", "args": {"path": "poem.txt"}, "why": "count"}],
                       "answer": "$step1.output.lines lines"})


async def test_webhook_workflow_through_the_api(config, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "poem.txt").write_text("a\nb\n")
    app = create_app(config, engines={"fake": FakeEngine(model, model="fake")}, tools=default_registry(),
                     hal=FakeHAL(), preload_models=False)
    async with lifespan_services(app) as svc:
        t = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {svc.tokens.admin_token()}"}
        async with httpx.AsyncClient(transport=t, base_url="http://localhost", headers=auth) as c, \
                httpx.AsyncClient(transport=t, base_url="http://localhost") as anon:
            r = await c.post("/api/v1/workflows/compile",
                             json={"description": "when called, count the lines of poem.txt", "workdir": str(ws)})
            assert r.status_code == 200, r.text
            prop = r.json()
            assert prop["trigger"]["kind"] == "webhook" and prop["steps"][0]["tool"] == "files.count"
            r = await c.post("/api/v1/workflows", json={"name": "count", "proposal": prop})
            assert r.status_code == 201, r.text
            assert (await anon.post("/api/v1/workflows/count/hook")).status_code == 401
            r = await c.post("/api/v1/workflows/count/hook")
            assert r.status_code == 202 and r.json()["fired"]
            await svc.extra["workflows"].idle()
            shown = (await c.get("/api/v1/workflows/count")).json()
            assert shown["runs"][0]["status"] == "succeeded" and shown["runs"][0]["cause"] == "webhook"
            assert "2 lines" in shown["runs"][0]["answer"]
            r = await c.get("/api/v1/workflows/ghost")
            assert r.status_code == 404 and "no workflow named 'ghost'" in r.text
            assert (await c.delete("/api/v1/workflows/count")).status_code == 200
            assert (await c.get("/api/v1/workflows")).json() == {"workflows": []}
    await asyncio.sleep(0)
