"""net.fetch: an HTTP(S) GET with httpx. Risk NETWORK: refused unless ``ctx.network``.

The page is data: its text is returned as a string (cut at ``max_bytes``) and never read
as instructions. Only http and https URLs; redirects are followed (at most
``REDIRECTS_MAX``); ``save_to`` keeps the body in a workspace file.
"""

from __future__ import annotations

from urllib.parse import urlparse

from llmos.errors import InvalidArgument, PermissionDenied, RemoteError
from llmos.tools.builtin._common import SAVE_TO, integer, params, string, write_text
from llmos.tools.registry import Tool, ToolContext, ToolResult
from llmos.types import Risk

FETCH_MAX_BYTES = 4 << 20      # most bytes one fetch reads
FETCH_TIMEOUT_S = 20.0
REDIRECTS_MAX = 5
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml", "+json", "+xml",
               "application/javascript", "application/csv")


def fetch(ctx: ToolContext, a: dict) -> ToolResult:
    import httpx

    if not ctx.network:
        raise PermissionDenied(f"net.fetch: agent {ctx.agent!r} has no network access",
                               reason="net.fetch needs the network capability")
    url = a["url"].strip()
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise InvalidArgument(f"url: {url!r} is not an http(s) URL", field="url",
                              expected="a URL starting with http:// or https://")
    dest = ctx.resolve(a["save_to"], "w", field="save_to") if a.get("save_to") else None
    limit = a["max_bytes"]
    body = bytearray()
    with httpx.Client(follow_redirects=True, max_redirects=REDIRECTS_MAX, timeout=FETCH_TIMEOUT_S,
                      headers={"User-Agent": "llmos-net.fetch"}) as client, client.stream("GET", url) as r:
        for chunk in r.iter_bytes():
            body += chunk[: max(0, limit + 1 - len(body))]
            if len(body) > limit:
                break
        status, ctype, final = r.status_code, r.headers.get("content-type", ""), str(r.url)
        encoding = r.encoding or "utf-8"
    cut = len(body) > limit
    del body[limit:]
    if status >= 400:
        raise RemoteError(f"net.fetch: {final} answered HTTP {status}")
    is_text = any(t in ctype.lower() for t in _TEXT_TYPES) or (not ctype and b"\x00" not in body[:4096])
    out = {"url": final, "status": status, "content_type": ctype, "bytes": len(body), "truncated": cut}
    files = []
    if dest is not None:
        write_text(dest, bytes(body))
        out["saved_to"] = ctx.rel(dest)
        files.append(ctx.rel(dest))
    if is_text:
        out["text"] = bytes(body).decode(encoding, errors="replace")
    summary = f"fetched {final} (HTTP {status}, {len(body)} bytes" + (", cut" if cut else "") + ")"
    if dest is not None:
        summary += f"; saved to {ctx.rel(dest)}"
    return ToolResult(out, summary, files)


TOOLS = [
    Tool(name="net.fetch", returns="{text, status}", kind="net", risk=Risk.NETWORK, fn=fetch, path_args={"save_to": "w"},
         description="Download a web page or file from an http(s) URL and return its text.",
         parameters=params(["url"], url=string("the http or https address", 2000, min_length=8),
                           save_to=SAVE_TO,
                           max_bytes=integer("most bytes to read", 1, FETCH_MAX_BYTES, 256 << 10))),
]
