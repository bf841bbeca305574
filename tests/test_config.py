import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmos.config import ensure_home, load_config
from llmos.errors import ConfigError, StateDirError


def test_defaults(home):
    cfg = load_config(env={"LLMOS_HOME": str(home)})
    assert cfg.home == home and cfg.model == "smollm2-135m"
    assert cfg.scheduler == "priority" and cfg.api.port == 8420
    assert cfg.db_path == home / "llmos.db"


def test_sources_in_order(home):
    (home / "config.toml").write_text(
        'model = "from-file"\nscheduler = "fifo"\n[engine]\nn_ctx = 4096\n[api]\nport = 9000\n')
    env = {"LLMOS_HOME": str(home), "LLMOS_SCHEDULER": "fair", "LLMOS_PORT": "9100"}
    cfg = load_config(env=env, overrides={"port": 9200})
    assert cfg.model == "from-file"          # file
    assert cfg.engine.n_ctx == 4096          # file
    assert cfg.scheduler == "fair"           # env beats file
    assert cfg.api.port == 9200              # flag beats env


def test_frozen(config):
    with pytest.raises(AttributeError):
        config.model = "x"  # type: ignore[misc]


@pytest.mark.parametrize("text, needle", [
    ('scheduler = "lottery"', "scheduler: expected one of"),
    ("[engine]\nn_ctx = 'big'", "engine.n_ctx: expected an integer"),
    ("[engine]\nwat = 1", "[engine]: unknown key"),
    ("[api]\nport = 70000", "api.port"),
    ('[[remote]]\nname = "x"\nbase_url = "ftp://a"\nmodel = "m"', "remote[0].base_url"),
    ('[[remote]]\nname = "x"\nmodel = "m"', "remote[0].base_url: expected a non-empty string"),
    ("model = [", "config file"),
    ('[[mcp]]\nname = "m"', "mcp[0]"),
    ("engine = false", "engine: expected a table"),
    ('remote = ["x"]', "remote: expected an array of tables"),
    ("model = 5", "model: expected a non-empty string"),
    ('[[remotes]]\nname = "x"', "unknown key(s) remotes"),
    ("[models]\nm = 1", "models.m: expected a non-empty string"),
    ('[[mcp]]\nname = "m"\ncommand = 5', "mcp[0].command"),
    ('[[mcp]]\nname = "m"\nurl = "http://x"\nenv = 3', "mcp[0].env: expected a table"),
    ("[api]\nhost = 1", "api.host"),
    ('planner_model = "gpt-17"', "planner_model: unknown model 'gpt-17'; expected auto, smollm2-135m, "
                                 "qwen2.5-coder-1.5b or the path of a .gguf file"),
    ("planner_model = 3", "planner_model: expected a non-empty string"),
    ('planner_model = ""', "planner_model: expected a non-empty string"),
    ("planner_gguf = false", "planner_gguf: expected a non-empty string"),
])
def test_bad_config_names_the_key(home, text, needle):
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(env={"LLMOS_HOME": str(home)})
    assert needle in str(ei.value)


def test_planner_model_choices(home):
    env = {"LLMOS_HOME": str(home)}
    assert load_config(env=env).planner_model == "auto" and load_config(env=env).planner_gguf is None
    (home / "config.toml").write_text('planner_model = "mine"\nplanner_gguf = "~/q.gguf"\n'
                                      '[models]\nmine = "/m/mine.gguf"\n'
                                      '[[remote]]\nname = "big"\nbase_url = "http://h/v1"\nmodel = "q"\n')
    cfg = load_config(env=env)
    assert cfg.planner_model == "mine" and cfg.planner_gguf == os.path.expanduser("~/q.gguf")
    for value in ("big", "smollm2-135m", "qwen2.5-coder-1.5b", "auto", "/any/file.gguf", "./rel/model"):
        assert load_config(env={**env, "LLMOS_PLANNER_MODEL": value}).planner_model == value
    assert load_config(env={**env, "LLMOS_PLANNER_GGUF": "/x.gguf"}).planner_gguf == "/x.gguf"
    assert load_config(env=env, overrides={"planner_model": "big"}).planner_model == "big"
    with pytest.raises(ConfigError) as ei:
        load_config(env={**env, "LLMOS_PLANNER_MODEL": "llama-9000"})
    assert str(ei.value).startswith("planner_model: unknown model 'llama-9000'")
    assert "mine" in str(ei.value) and "big" in str(ei.value) and "llmos models" in ei.value.hint


def test_remote_key_comes_from_env(home, monkeypatch):
    (home / "config.toml").write_text(
        '[[remote]]\nname = "r"\nbase_url = "http://127.0.0.1:9/v1/"\nmodel = "m"\napi_key_env = "MY_KEY"\n')
    monkeypatch.setenv("MY_KEY", "sekrit")
    cfg = load_config(env={"LLMOS_HOME": str(home)})
    (r,) = cfg.remotes
    assert r.base_url == "http://127.0.0.1:9/v1" and r.api_key == "sekrit"


def test_missing_explicit_file(home):
    with pytest.raises(ConfigError):
        load_config(home / "nope.toml", env={"LLMOS_HOME": str(home)})


def test_unwritable_home_is_a_clear_error(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    os.chmod(target, 0o500)
    try:
        if os.geteuid() == 0:  # root writes anyway: use a path under a file instead
            target = tmp_path / "file"
            target.write_text("x")
            target = target / "home"
        with pytest.raises(StateDirError) as ei:
            ensure_home(target)
        assert ei.value.hint and "LLMOS_HOME" in ei.value.hint
    finally:
        os.chmod(tmp_path / "ro", 0o700)


def test_engine_batch_invariant_flag(home):
    assert load_config(env={"LLMOS_HOME": str(home)}).engine.batch_invariant is True
    cfg = load_config(env={"LLMOS_HOME": str(home), "LLMOS_BATCH_INVARIANT": "off"})
    assert cfg.engine.batch_invariant is False
    (home / "config.toml").write_text("[engine]\nbatch_invariant = 'maybe'\n")
    with pytest.raises(ConfigError, match="engine.batch_invariant: expected true or false"):
        load_config(env={"LLMOS_HOME": str(home)})


def test_ray_engines_flag_from_file_env_and_override(home):
    assert load_config(env={"LLMOS_HOME": str(home)}).ray_engines is False
    (home / "config.toml").write_text('ray = "auto"\nray_engines = true\n')
    cfg = load_config(env={"LLMOS_HOME": str(home)})
    assert cfg.ray == "auto" and cfg.ray_engines is True
    assert load_config(env={"LLMOS_HOME": str(home), "LLMOS_RAY_ENGINES": "off"}).ray_engines is False
    assert load_config(env={"LLMOS_HOME": str(home)}, overrides={"ray_engines": False}).ray_engines is False
    (home / "config.toml").write_text("ray_engines = 'sometimes'\n")
    with pytest.raises(ConfigError, match="ray_engines: expected true or false"):
        load_config(env={"LLMOS_HOME": str(home)})


def test_reminder_webhook_from_file_env_and_flag(home):
    env = {"LLMOS_HOME": str(home)}
    assert load_config(env=env).reminder_webhook is None
    (home / "config.toml").write_text('[reminders]\nwebhook = "https://hooks.example.com/llmos"\n')
    assert load_config(env=env).reminder_webhook == "https://hooks.example.com/llmos"
    cfg = load_config(env={**env, "LLMOS_REMINDER_WEBHOOK": "http://127.0.0.1:9/env"})
    assert cfg.reminder_webhook == "http://127.0.0.1:9/env"                      # the environment wins
    cfg = load_config(env={**env, "LLMOS_REMINDER_WEBHOOK": "http://127.0.0.1:9/env"},
                      overrides={"reminder_webhook": "http://[::1]:8/flag"})
    assert cfg.reminder_webhook == "http://[::1]:8/flag"                         # then the flag


@pytest.mark.parametrize("where, value, name", [
    ("file", "hooks.example.com/llmos", "reminders.webhook"),
    ("file", "ftp://hooks.example.com/x", "reminders.webhook"),
    ("file", 42, "reminders.webhook"),
    ("file", "", "reminders.webhook"),
    ("env", "https://", "LLMOS_REMINDER_WEBHOOK"),
    ("env", "http://host:99999/x", "LLMOS_REMINDER_WEBHOOK"),
    ("flag", "not a url", "--reminder-webhook"),
])
def test_a_bad_reminder_webhook_is_one_line_naming_where(home, where, value, name):
    env = {"LLMOS_HOME": str(home)}
    overrides = {}
    if where == "file":
        (home / "config.toml").write_text(f"[reminders]\nwebhook = {_toml(value)}\n")
    elif where == "env":
        env["LLMOS_REMINDER_WEBHOOK"] = value
    else:
        overrides["reminder_webhook"] = value
    with pytest.raises(ConfigError) as e:
        load_config(env=env, overrides=overrides)
    msg = str(e.value)
    assert msg.startswith(f"{name}: expected an http(s) URL") and repr(value) in msg and "\n" not in msg


def test_unknown_reminders_key(home):
    (home / "config.toml").write_text('[reminders]\nwebhok = "https://x.example"\n')
    with pytest.raises(ConfigError, match=r"\[reminders\]: unknown key\(s\) webhok; expected webhook"):
        load_config(env={"LLMOS_HOME": str(home)})


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(x)}" for k, x in v.items()) + "}"
    return repr(v)


_SCALAR = st.one_of(st.booleans(), st.integers(-2**62, 2**62), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=6), st.sampled_from(["fifo", "energy", "http://x", "127.0.0.1"]))
_VALUE = st.recursive(_SCALAR, lambda c: st.one_of(
    st.lists(c, max_size=3),
    st.dictionaries(st.sampled_from(["name", "base_url", "model", "command", "url", "n_ctx", "port", "env",
                                         "webhook"]),
                    c, max_size=3)), max_leaves=5)
_DOC = st.dictionaries(st.sampled_from(["model", "scheduler", "alloc_mode", "log_level", "engine", "api",
                                        "remote", "models", "mcp", "remotes", "reminders"]), _VALUE, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_DOC)
def test_any_config_document_loads_or_names_the_problem(home, doc):
    """Every well-formed TOML document of the known keys, any types: a Config or a ConfigError."""
    (home / "config.toml").write_text("\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items()))
    try:
        load_config(env={"LLMOS_HOME": str(home)})
    except ConfigError as e:
        assert e.message and "\n" not in e.message
