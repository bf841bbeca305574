"""Every ``llmos`` command's ``--help`` shows an ``Example: llmos ...`` line."""

from __future__ import annotations

import pytest
import typer

from llmos.cli import app, main


def _commands(group, path=()):
    for name, sub in getattr(group, "commands", {}).items():
        if getattr(sub, "commands", None):
            yield from _commands(sub, (*path, name))
        else:
            yield (*path, name)


def _all_commands() -> list:
    out = []
    for path in _commands(typer.main.get_command(app)):
        out.append(pytest.param(path, id=" ".join(path)))
    return out


@pytest.mark.parametrize("path", _all_commands())
def test_every_command_help_shows_an_example(capsys, path):
    assert main([*path, "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.strip().startswith("Example: llmos ") for ln in lines), "\n".join(lines)


def test_the_walk_sees_the_commands():
    names = {" ".join(p) for p in _commands(typer.main.get_command(app))}
    assert {"run", "shell", "ps", "kill", "nice", "alloc", "chat", "models", "serve", "mcp"} <= names
