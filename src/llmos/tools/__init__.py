"""Tools: the registry (schemas, risk, path checks), the sandbox and the builtin tools.

    from llmos.tools import default_registry, ToolContext
    reg = default_registry()
    result = reg.call("files.read", {"path": "notes.txt"}, ToolContext(workdir=Path(".")))

``registry`` is the contract (Tool, ToolContext, ToolResult, ToolRegistry, check_path);
``sandbox`` confines the exec tools; ``builtin/`` holds one module per tool group;
``mcp`` (tools from MCP servers) is owned by the API layer.
"""

from __future__ import annotations

from llmos.tools.registry import (
    KINDS,
    Tool,
    ToolContext,
    ToolRegistry,
    ToolResult,
    check_path,
    check_schema,
    default_registry,
    overwrite_risk,
)

__all__ = ["KINDS", "Tool", "ToolContext", "ToolRegistry", "ToolResult", "check_path", "check_schema",
           "default_registry", "overwrite_risk"]
