"""Daemon commands: ``llmos serve`` (REST + OpenAI API + dashboard) and ``llmos mcp``."""

from __future__ import annotations

import dataclasses

import typer

from llmos.cli import state

__all__ = ["register", "serve", "mcp"]


def serve(
    host: str = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", min=0, max=65535, help="Port (default 8420; 0: any free one)."),
    allow_remote: bool = typer.Option(False, "--allow-remote",
                                      help="Allow a non-loopback --host (clients still need a token)."),
    allow_host: list[str] = typer.Option(None, "--allow-host",
                                         help="A Host name to answer besides localhost and loopback "
                                              "addresses (repeat for more)."),
    ray: str = typer.Option(None, "--ray", help="Run tool steps and jobs on a Ray cluster: 'auto' (join the "
                                               "one on this machine, else start a local head) or HOST:PORT. "
                                               "Needs the ray extra."),
    ray_or_local: bool = typer.Option(False, "--ray-or-local",
                                      help="With --ray: when the cluster cannot be joined, say so in one "
                                           "line and serve with this machine alone."),
    ray_engines: bool = typer.Option(None, "--ray-engines/--no-ray-engines",
                                     help="With --ray: run each local model as one engine actor per node "
                                          "(generations go to the least loaded; a lost node's are run "
                                          "again elsewhere). Default: the config's ray_engines (off)."),
    reminder_webhook: str = typer.Option(None, "--reminder-webhook",
                                         help="An http(s) URL that gets a JSON POST per fired reminder "
                                              "(default: [reminders] webhook in the config, or "
                                              "LLMOS_REMINDER_WEBHOOK)."),
) -> None:
    """Run the LLM OS daemon: REST API, OpenAI-compatible API, metrics and the dashboard.

    Example: llmos serve --port 8420
    """
    from llmos.api.server import dashboard_url
    from llmos.api.server import serve as run

    cfg = state.config(host=host, port=port, ray=ray, ray_engines=ray_engines, reminder_webhook=reminder_webhook)
    if cfg.ray_engines and not cfg.ray:
        raise typer.BadParameter("--ray-engines needs --ray (or ray in the config)", param_hint="--ray-engines")
    conn = None
    if cfg.ray:                      # joined here, in the main thread, before the daemon starts
        from llmos.errors import ConfigError
        from llmos.executor.ray_connect import connect

        try:
            conn = connect(cfg.ray)
        except ConfigError as e:
            if not ray_or_local:
                raise
            typer.echo(f"warning: {e.message}; serving on this machine alone (--ray-or-local)", err=True)
            cfg = dataclasses.replace(cfg, ray=None, ray_engines=False)

    def ready(url: str, token: str) -> None:
        typer.echo(f"llmos daemon on {url}  (state: {cfg.home})")
        typer.echo(f"dashboard:  {dashboard_url(url, token)}")
        typer.echo(f"OpenAI API: {url}/v1   (api key: the admin token in {cfg.home / 'admin.token'})")
        if conn is not None:
            nodes = conn.view.nodes()
            typer.echo(f"ray:        {conn.address}  ({len(nodes)} nodes, {sum(n.cpus for n in nodes):g} CPUs, "
                       f"{sum(n.gpus for n in nodes):g} GPUs; `llmos hw --ray {conn.address}` lists them)")
            if cfg.ray_engines:
                typer.echo("engines:    one actor per node for each local model, started at its first use")
        typer.echo("stop with Ctrl-C")

    try:
        run(cfg, allow_remote=allow_remote, on_ready=ready, allowed_hosts=tuple(allow_host or ()))
    finally:
        if conn is not None:
            conn.close()             # leaves the cluster; a head started here is stopped by PID


def mcp(
    root: list[str] = typer.Option(None, "--root", help="A folder the MCP server's agent may use "
                                   "(repeat for more; default: the current directory)."),
    network: bool = typer.Option(False, "--network", help="Let its runs use network tools."),
) -> None:
    """Serve runs, processes and memory as MCP tools over stdio (for MCP clients).

    The server acts as its own agent, limited to the --root folders; a risky step waits
    for your answer (`llmos pending`, `llmos confirm <id>`, or the dashboard).
    Uses the running daemon when there is one, else an in-process kernel.
    Example: llmos mcp --root ~/projects/notes   (an MCP client's config:
    {"command": "llmos", "args": ["mcp", "--root", "/path/to/project"]})
    """
    from llmos.api.mcp_server import run_stdio

    run_stdio(state.config(), roots=root or None, network=network)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(mcp)
