"""A stdlib-only OpenAI-compatible server to run as a managed child process in tests.

    python stub_child_server.py --port P [--health-delay-s S] [--exit-after-s S]
                                [--exit-now CODE] [--no-health]

- ``GET /health``: 503 until ``--health-delay-s`` has passed since start, then 200
  (like llama-server while it loads a model); each answer is logged as ``health <code>``.
  ``--no-health``: 404 (like llama-cpp-python's server), so ``/v1/models`` is the probe.
- ``GET /v1/models``: 200.
- ``POST /v1/chat/completions`` (stream): echoes the last user message word by word.
- ``--exit-after-s``: exit with code 7 that long after start (a crash).
- ``--exit-now CODE``: print a message and exit at once (a failed start).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START = time.monotonic()
ARGS: argparse.Namespace


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, code: int, obj: object) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            if ARGS.no_health:
                self._json(404, {"detail": "Not Found"})
                return
            code = 200 if time.monotonic() - START >= ARGS.health_delay_s else 503
            print(f"health {code}", flush=True)
            self._json(code, {"status": "ok" if code == 200 else "loading model"})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "child", "object": "model"}]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
            return
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        words = re.findall(r"\s*\S+", users[-1]["content"] if users else "")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for w in words:
            chunk = {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        print(f"pid {os.getpid()} served {len(words)} tokens", flush=True)


def main() -> None:
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--health-delay-s", type=float, default=0.0)
    p.add_argument("--exit-after-s", type=float, default=None)
    p.add_argument("--exit-now", type=int, default=None)
    p.add_argument("--no-health", action="store_true")
    ARGS = p.parse_args()
    if ARGS.exit_now is not None:
        print("error: failed to load model: bad magic", flush=True)
        sys.exit(ARGS.exit_now)
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    if ARGS.exit_after_s is not None:
        threading.Timer(ARGS.exit_after_s, lambda: os._exit(7)).start()
    print(f"listening on {ARGS.port} pid {os.getpid()}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
