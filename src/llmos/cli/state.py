"""Global CLI options (set once by the root callback) and config loading for commands."""

from __future__ import annotations

from llmos.config import Config, ensure_home, load_config

DEBUG = False            # --debug: show tracebacks
CONFIG_PATH: str | None = None   # --config
HOME: str | None = None          # --home


def config(**overrides) -> Config:
    """The Config for this invocation, with the state directory created and checked."""
    cfg = load_config(CONFIG_PATH, overrides={"home": HOME, **overrides})
    ensure_home(cfg.home)
    return cfg
