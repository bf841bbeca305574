"""One frozen configuration, loaded once at boot.

Sources, later ones win: built-in defaults (``params``) → TOML file →
environment variables ``LLMOS_*`` → explicit overrides (CLI flags).

The TOML file is ``$LLMOS_HOME/config.toml`` unless a path is given::

    model = "smollm2-135m"          # default model for chat and llm.generate
    planner_model = "auto"          # the shell's planner: auto (the tier rule in llm/tiers.py),
                                    # a registry name, a [[remote]] name or a .gguf path
    planner_gguf = "/path/to/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
                                    # where qwen2.5-coder-1.5b lives (default: the file
                                    # `make` installs under the venv, .venv/share/llmos/models)
    scheduler = "priority"          # fifo | rr | priority | fair | sjf
    alloc_mode = "throughput"       # throughput | latency | cost | energy

    [engine]
    n_ctx = 8192
    n_seq_max = 16
    threads = 0                     # 0: measured at the engine's first start, kept in cache/
    batch_invariant = true          # false: faster long prefills, batch-dependent output

    [api]
    host = "127.0.0.1"
    port = 8420

    [versions]                      # file versions kept for `llmos undo`
    quota_bytes = 1073741824        # blobs kept in all; the oldest changes go first past it
    max_age_days = 30               # changes older than this are pruned

    [reminders]
    webhook = "https://hooks.example.com/llmos"   # a JSON POST per fired reminder (http or https)

    [[remote]]                      # any OpenAI-compatible server
    name = "local-vllm"
    base_url = "http://127.0.0.1:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env = "VLLM_API_KEY"    # the key itself never goes in the file

    [[mcp]]                         # MCP tool servers to mount
    name = "everything"
    command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
    risk = "exec"

Environment variables: ``LLMOS_HOME``, ``LLMOS_MODEL``, ``LLMOS_PLANNER_MODEL``,
``LLMOS_PLANNER_GGUF``, ``LLMOS_SCHEDULER``, ``LLMOS_ALLOC_MODE``, ``LLMOS_N_CTX``, ``LLMOS_N_SEQ_MAX``, ``LLMOS_THREADS``,
``LLMOS_BATCH_INVARIANT``,
``LLMOS_HOST``, ``LLMOS_PORT``, ``LLMOS_LOG_LEVEL``, ``LLMOS_RAY`` (a Ray cluster: auto or HOST:PORT),
``LLMOS_REMINDER_WEBHOOK`` (``llmos serve --reminder-webhook``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos import params
from llmos.errors import ConfigError, InvalidArgument, StateDirError
from llmos.kernel.access import StateArea, resolve_path, workspace_problem

__all__ = ["Config", "EngineConfig", "ApiConfig", "RemoteModel", "McpServer", "VersionsConfig",
           "load_config", "default_home", "ensure_home", "check_workspace"]

SCHEDULERS = ("fifo", "rr", "priority", "fair", "sjf")
_TOP_KEYS = {"model", "planner_model", "planner_gguf", "scheduler", "alloc_mode", "log_level", "engine",
             "api", "remote", "models", "mcp", "versions", "ray", "ray_engines", "reminders"}
PLANNER_AUTO = "auto"          # planner_model: pick by the tier rule (llm/tiers.py)
ALLOC_MODES = ("throughput", "latency", "cost", "energy")
_TOP_STRINGS = ("model", "planner_model", "planner_gguf", "scheduler", "alloc_mode", "log_level", "ray")


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int = params.ENGINE_N_CTX_TOKENS          # tokens, whole shared context
    n_seq_max: int = params.ENGINE_N_SEQ_MAX         # sequences resident at once
    n_batch: int = params.ENGINE_N_BATCH_TOKENS      # tokens per llama_batch
    prefill_chunk: int = params.ENGINE_PREFILL_CHUNK_TOKENS
    threads: int = 0                                  # 0: the count measured fastest and steady
                                                      # for the model here (llm/tune.py), kept in
                                                      # $LLMOS_HOME/cache/engine-tune.json
    n_gpu_layers: int = 0                             # -1: all on GPU when built with CUDA
    # exact reproducibility: a sequence's greedy text does not depend on its batch-mates, so
    # batched == unbatched and preempted+resumed == uninterrupted; costs prefill speed on long
    # prompts (2.7x on a 600-token prompt with 1 thread: flash attention, 32-token ubatches).
    # Off: faster prefill, output may depend on batch-mates (the dev eval dropped 19 -> 17/20).
    batch_invariant: bool = True


@dataclass(frozen=True)
class ApiConfig:
    host: str = params.API_HOST
    port: int = params.API_PORT


@dataclass(frozen=True)
class VersionsConfig:
    quota_bytes: int = params.VERSIONS_QUOTA_BYTES        # bytes of kept file versions in all
    max_age_days: float = params.VERSIONS_MAX_AGE_DAYS    # days a change is kept


@dataclass(frozen=True)
class RemoteModel:
    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    context_length: int | None = None

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True)
class McpServer:
    name: str
    command: tuple[str, ...] = ()     # stdio transport
    url: str | None = None            # streamable HTTP transport
    risk: str = "exec"                # unknown tools need confirmation by default
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Config:
    home: Path
    model: str = params.DEFAULT_MODEL
    planner_model: str = PLANNER_AUTO             # "auto", a registry name, a remote name or a GGUF path
    planner_gguf: str | None = None               # path of the planner-tier GGUF (None: the venv's)
    scheduler: str = "priority"
    alloc_mode: str = "throughput"
    log_level: str = "INFO"
    engine: EngineConfig = field(default_factory=EngineConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    remotes: tuple[RemoteModel, ...] = ()
    models: tuple[tuple[str, str], ...] = ()      # extra local GGUFs: (name, path)
    mcp: tuple[McpServer, ...] = ()
    config_file: Path | None = None
    versions: VersionsConfig = field(default_factory=VersionsConfig)
    ray: str | None = None                        # Ray cluster: "auto" or HOST:PORT; None: this process
    ray_engines: bool = False                     # with ray: local models run as one engine actor per node
    reminder_webhook: str | None = None           # http(s) URL: a JSON POST per fired reminder; None: off

    @property
    def db_path(self) -> Path:
        return self.home / "llmos.db"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def state_area(self) -> StateArea:
        """The state directory and the config file: no agent may reach them."""
        return StateArea.of(self.home, self.config_file or self.home / "config.toml")

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def check_workspace(cfg: Config | None, path: str | os.PathLike, *, field: str = "workdir") -> Path:
    """``path`` resolved when it may be an agent's workspace; InvalidArgument (with a hint
    to pick a folder) for ``/``, the home directory itself, or a folder holding the state
    directory or the config file."""
    wd = resolve_path(path)
    why = workspace_problem(wd, cfg.state_area() if cfg is not None else None)
    if why:
        raise InvalidArgument(f"{field}: {why}", field=field,
                              expected="a project folder that does not hold LLM OS's state",
                              hint="pick a folder for the work, e.g. --workdir ~/projects/notes")
    return Path(wd)


def default_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("LLMOS_HOME"):
        return Path(env["LLMOS_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmos"


def ensure_home(home: Path) -> Path:
    """Create the state directory (and logs/) or raise StateDirError with a hint."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        (home / "logs").mkdir(exist_ok=True)
        probe = home / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise StateDirError(
            f"state directory {home} is not writable ({e.strerror or e})",
            hint="set LLMOS_HOME to a writable directory, e.g. LLMOS_HOME=/tmp/llmos",
        ) from e
    return home


def _int(value: Any, name: str, lo: int = 0, hi: int = 1 << 30) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"{name}: expected an integer in [{lo}, {hi}], got {v}")
    return v


def _table(data: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """``[key]`` as a dict (absent: empty); ``where`` prefixes the name in errors."""
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(f"{where}{key}: expected a table (a [{key}] section), got {type(v).__name__}")
    return dict(v)


def _tables(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """``[[key]]`` as a list of dicts (absent: empty)."""
    v = data.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ConfigError(f"{key}: expected an array of tables ([[{key}]] sections), got {type(v).__name__}")
    return v


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    v = str(value).strip().lower()
    if v not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return v


def _planner_model(value: Any, models: list[tuple[str, str]], remotes: list[RemoteModel]) -> str:
    """``planner_model``: "auto", a model the registry knows by name, or a GGUF path.

    A path is checked when the planner is chosen (``llm.tiers``), not here, so a moved
    file does not stop every command; an unknown bare name fails here, listing the names.
    """
    v = _str(value, "planner_model").strip()
    if v == PLANNER_AUTO or v.endswith(".gguf") or "/" in v or v.startswith("~"):
        return v
    known = [params.DEFAULT_MODEL, params.PLANNER_MODEL, *(n for n, _ in models), *(r.name for r in remotes)]
    if v not in known:
        raise ConfigError(f"planner_model: unknown model {v!r}; expected {PLANNER_AUTO}, "
                          f"{', '.join(dict.fromkeys(known))} or the path of a .gguf file",
                          hint="run `llmos models` to list the models and tiers")
    return v


def _ray(value: Any) -> str | None:
    """``ray``: auto or HOST:PORT (None or "" or "off": no cluster)."""
    from llmos.executor.ray_request import parse_address

    if value is None or value in ("", "off"):
        return None
    try:
        return parse_address(_str(value, "ray"))
    except ConfigError as e:
        raise ConfigError(e.message.replace("--ray:", "ray:", 1), hint=e.hint) from None


def _webhook(value: Any, name: str) -> str:
    """An http(s) URL with a host (``name``: where it came from, for the one-line error)."""
    from urllib.parse import urlsplit

    v = value.strip() if isinstance(value, str) else value
    try:
        parts = urlsplit(v) if isinstance(v, str) else None
        ok = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
        if ok:
            parts.port                      # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{name}: expected an http(s) URL such as https://hooks.example.com/llmos, "
                          f"got {value!r}")
    return v


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the Config. Raises ConfigError naming the bad key and the expectation."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    home = Path(overrides.pop("home", None) or default_home(env)).expanduser()
    cfg_path = Path(path).expanduser() if path else home / "config.toml"
    data: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            data = tomllib.loads(cfg_path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {cfg_path}: {e}",
                              hint="fix the TOML syntax or move the file away") from e
    elif path:
        raise ConfigError(f"config file {cfg_path} does not exist")

    try:
        return _build(data, env, overrides, home, cfg_path)
    except ConfigError as e:
        if e.hint is None:
            e.hint = (f"fix it in {cfg_path} (or the LLMOS_* variables)" if cfg_path.exists()
                      else "check the LLMOS_* environment variables and flags")
        raise


def _build(data: dict[str, Any], env: Mapping[str, str], overrides: dict[str, Any], home: Path,
           cfg_path: Path) -> Config:
    """The Config from the file's ``data``, ``env`` and ``overrides`` (later ones win)."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"config file {cfg_path}: unknown key(s) {', '.join(sorted(unknown))}",
                          hint=f"known: {', '.join(sorted(_TOP_KEYS))}")
    eng = _table(data, "engine")
    api = _table(data, "api")
    top = {k: _str(data[k], k) for k in _TOP_STRINGS if k in data}
    if "ray_engines" in data:
        top["ray_engines"] = data["ray_engines"]
    rem = _table(data, "reminders")
    if set(rem) - {"webhook"}:
        raise ConfigError(f"[reminders]: unknown key(s) {', '.join(sorted(set(rem) - {'webhook'}))}; "
                          "expected webhook")
    webhook = (rem["webhook"], "reminders.webhook") if "webhook" in rem else None
    if env.get("LLMOS_REMINDER_WEBHOOK"):
        webhook = (env["LLMOS_REMINDER_WEBHOOK"], "LLMOS_REMINDER_WEBHOOK")
    if "reminder_webhook" in overrides:
        webhook = (overrides.pop("reminder_webhook"), "--reminder-webhook")
    env_map = {"LLMOS_MODEL": (top, "model"), "LLMOS_PLANNER_MODEL": (top, "planner_model"),
               "LLMOS_PLANNER_GGUF": (top, "planner_gguf"), "LLMOS_SCHEDULER": (top, "scheduler"),
               "LLMOS_ALLOC_MODE": (top, "alloc_mode"), "LLMOS_LOG_LEVEL": (top, "log_level"),
               "LLMOS_N_CTX": (eng, "n_ctx"), "LLMOS_N_SEQ_MAX": (eng, "n_seq_max"),
               "LLMOS_THREADS": (eng, "threads"), "LLMOS_BATCH_INVARIANT": (eng, "batch_invariant"),
               "LLMOS_HOST": (api, "host"), "LLMOS_RAY": (top, "ray"), "LLMOS_RAY_ENGINES": (top, "ray_engines"),
               "LLMOS_PORT": (api, "port")}
    for var, (target, key) in env_map.items():
        if env.get(var):
            target[key] = env[var]
    for key in (*_TOP_STRINGS, "ray_engines"):
        if key in overrides:
            top[key] = overrides.pop(key)
    for key in ("host", "port"):
        if key in overrides:
            api[key] = overrides.pop(key)
    for key in ("n_ctx", "n_seq_max", "threads", "n_gpu_layers", "batch_invariant"):
        if key in overrides:
            eng[key] = overrides.pop(key)
    if overrides:
        raise ConfigError(f"unknown config override(s): {', '.join(sorted(overrides))}")

    known_eng = {f.name for f in dataclasses.fields(EngineConfig)}
    bad = set(eng) - known_eng
    if bad:
        raise ConfigError(f"[engine]: unknown key(s) {', '.join(sorted(bad))}; "
                          f"expected {', '.join(sorted(known_eng))}")
    engine = EngineConfig(**{k: _bool(v, f"engine.{k}") if k == "batch_invariant"
                             else _int(v, f"engine.{k}", -1 if k == "n_gpu_layers" else 0)
                             for k, v in eng.items()})
    if engine.n_ctx < 256:
        raise ConfigError(f"engine.n_ctx: expected at least 256 tokens, got {engine.n_ctx}")
    if engine.n_seq_max < 1:
        raise ConfigError("engine.n_seq_max: expected at least 1")
    bad = set(api) - {"host", "port"}
    if bad:
        raise ConfigError(f"[api]: unknown key(s) {', '.join(sorted(bad))}; expected host, port")
    apic = ApiConfig(host=_str(api.get("host", params.API_HOST), "api.host"),
                     port=_int(api.get("port", params.API_PORT), "api.port", 0, 65535))

    remotes = []
    for i, r in enumerate(_tables(data, "remote")):
        for req in ("name", "base_url", "model"):
            if not isinstance(r.get(req), str) or not r.get(req):
                raise ConfigError(f"remote[{i}].{req}: expected a non-empty string")
        if not str(r["base_url"]).startswith(("http://", "https://")):
            raise ConfigError(f"remote[{i}].base_url: expected an http(s) URL, got {r['base_url']!r}")
        key_env, ctx = r.get("api_key_env"), r.get("context_length")
        remotes.append(RemoteModel(name=r["name"], base_url=r["base_url"].rstrip("/"),
                                   model=r["model"],
                                   api_key_env=None if key_env is None else _str(key_env, f"remote[{i}].api_key_env"),
                                   context_length=None if ctx is None else _int(ctx, f"remote[{i}].context_length", 1)))
    ver = _table(data, "versions")
    bad = set(ver) - {"quota_bytes", "max_age_days"}
    if bad:
        raise ConfigError(f"[versions]: unknown key(s) {', '.join(sorted(bad))}; expected quota_bytes, max_age_days")
    versions = VersionsConfig(
        quota_bytes=_int(ver.get("quota_bytes", params.VERSIONS_QUOTA_BYTES), "versions.quota_bytes", 0, 1 << 50),
        max_age_days=float(_int(ver.get("max_age_days", params.VERSIONS_MAX_AGE_DAYS), "versions.max_age_days",
                                0, 100_000)))
    models = []
    for name, p in _table(data, "models").items():
        models.append((str(name), str(Path(_str(p, f"models.{name}")).expanduser())))
    mcps = []
    for i, m in enumerate(_tables(data, "mcp")):
        if not isinstance(m.get("name"), str) or not m.get("name"):
            raise ConfigError(f"mcp[{i}].name: expected a non-empty string")
        if not m.get("command") and not m.get("url"):
            raise ConfigError(f"mcp[{i}]: expected 'command' (stdio) or 'url' (HTTP)")
        cmd = m.get("command") or ()
        if isinstance(cmd, str):
            cmd = (cmd,)
        if not isinstance(cmd, list | tuple) or not all(isinstance(c, str) for c in cmd):
            raise ConfigError(f"mcp[{i}].command: expected a list of strings, got {cmd!r}")
        url = m.get("url")
        env_vars = _table(m, "env", f"mcp[{i}].")
        if not all(isinstance(v, str) for v in env_vars.values()):
            raise ConfigError(f"mcp[{i}].env: expected string values")
        mcps.append(McpServer(name=m["name"], command=tuple(cmd),
                              url=None if url is None else _str(url, f"mcp[{i}].url"),
                              risk=str(m.get("risk", "exec")), env=tuple(sorted(env_vars.items()))))

    return Config(
        home=home,
        model=str(top.get("model", params.DEFAULT_MODEL)),
        planner_model=_planner_model(top.get("planner_model", PLANNER_AUTO), models, remotes),
        planner_gguf=(None if top.get("planner_gguf") is None
                      else str(Path(_str(top["planner_gguf"], "planner_gguf")).expanduser())),
        scheduler=_choice(top.get("scheduler", "priority"), "scheduler", SCHEDULERS),
        alloc_mode=_choice(top.get("alloc_mode", "throughput"), "alloc_mode", ALLOC_MODES),
        log_level=str(top.get("log_level", "INFO")).upper(),
        engine=engine, api=apic, remotes=tuple(remotes), models=tuple(models),
        mcp=tuple(mcps), config_file=cfg_path if cfg_path.exists() else None, versions=versions,
        ray=_ray(top.get("ray")),
        ray_engines=_bool(top.get("ray_engines", False), "ray_engines"),
        reminder_webhook=None if webhook is None else _webhook(*webhook),
    )
