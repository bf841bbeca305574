"""Bad input at the command line: every refusal is one ``error:`` line and a ``hint:``
line (or the argument parser's usage error), a non-zero exit, never a traceback.

In-process through ``llmos.cli.main``; ``llmos run`` boots its kernel on a FakeEngine
(``use_local_kernel``), so nothing loads a model. Hypothesis draws the odd values.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmos import params
from llmos.cli import main

FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _ws(home):
    """A workspace next to the state directory (a workspace may not hold it)."""
    ws = home.parent / "ws"
    ws.mkdir(exist_ok=True)
    return ws


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def assert_refused(rc: int, text: str) -> None:
    """A clean refusal: non-zero, no traceback, and either a usage error or exactly
    ``error: ...`` + ``hint: ...`` as the last two lines."""
    assert rc != 0, text
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("Usage:"):
        assert rc == 2 and any(ln.startswith("Error:") for ln in lines), text
        return
    assert len(lines) >= 2 and lines[-2].startswith("error: ") and lines[-1].startswith("hint: "), text
    assert not any(ln.startswith("error: ") for ln in lines[:-2]), text


# ── llmos run ───────────────────────────────────────────────────────────────
BAD_REQUESTS = st.one_of(
    st.text(alphabet=" \t\n\r\x0b\x0c", max_size=20),                                 # nothing to do
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=20), st.text(max_size=20)),  # NUL
    st.builds(lambda s: s + "x" * (params.REQUEST_MAX_CHARS + 1), st.text(max_size=5)),  # too long
    st.builds(lambda a: a + "\udcff", st.text(max_size=10)),                        # undecodable argv bytes
)


@FUZZ
@given(request=BAD_REQUESTS)
@example(request="")
def test_run_refuses_bad_requests_before_planning(capsys, use_local_kernel, home, request):
    use_local_kernel()
    rc, text = run_cli(capsys, "run", "--dry-run", "--workdir", str(_ws(home)), "--", request)
    assert_refused(rc, text)
    assert "request" in text and "planning" not in text


@FUZZ
@given(request=st.text(min_size=1, max_size=300).filter(lambda s: s.strip() and "\x00" not in s))
@example(request="\U0001F600 count the lines of poem.txt, s'il vous plaît")
def test_run_takes_any_plain_text(capsys, use_local_kernel, home, request):
    """Any non-empty text is a request: planned (--dry-run), not refused."""
    use_local_kernel()
    rc, text = run_cli(capsys, "run", "--dry-run", "--json", "--workdir", str(_ws(home)), "--", request)
    assert rc == 0 and "Traceback" not in text, text
    assert json.loads(text.splitlines()[-1])["status"] == "planned"


@pytest.mark.parametrize("argv", [
    ["run", "--dry-run", "--priority", "99", "x"],
    ["run", "--dry-run", "--priority", "soon", "x"],
    ["run", "--dry-run", "--workdir", "/no/such/dir", "x"],
    ["run"],
])
def test_run_refuses_bad_options(capsys, use_local_kernel, argv):
    use_local_kernel()
    assert_refused(*run_cli(capsys, *argv))


# ── llmos nice / kill ───────────────────────────────────────────────────────
NOT_AN_INT = st.text(max_size=12).filter(lambda s: not s.strip().lstrip("+-").isdigit())


@FUZZ
@given(pid=st.integers(1, 10**6), priority=st.one_of(
    NOT_AN_INT, st.integers().filter(lambda p: not params.PRIORITY_MIN <= p <= params.PRIORITY_MAX).map(str)))
def test_nice_refuses_bad_priorities(capsys, home, pid, priority):
    assert_refused(*run_cli(capsys, "nice", "--", str(pid), priority))


@FUZZ
@given(pid=st.one_of(NOT_AN_INT, st.integers(max_value=0).map(str), st.integers(10**6, 10**30).map(str)))
def test_kill_refuses_unknown_or_malformed_pids(capsys, home, pid):
    rc, text = run_cli(capsys, "kill", "--", pid)
    assert_refused(rc, text)


def test_kill_and_nice_of_an_unknown_pid_name_it(capsys, home):
    for argv in (["kill", "424242"], ["nice", "424242", "3"]):
        rc, text = run_cli(capsys, *argv)
        assert_refused(rc, text)
        assert "424242" in text and "llmos ps" in text


# ── llmos alloc ─────────────────────────────────────────────────────────────
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(
        st.sampled_from(["tasks", "resources", "objective", "name", "cost", "capacity", "x"]), c, max_size=3)),
    max_leaves=8)


@FUZZ
@given(suffix=st.sampled_from([".json", ".yaml", ".txt"]), body=st.one_of(
    st.binary(max_size=60),                                    # not even text
    st.text(max_size=60),                                      # text, rarely a document
    JSONISH.map(json.dumps)))                                  # documents of the wrong shape
@example(suffix=".json", body="{bad")
@example(suffix=".yaml", body="a: [\n")
@example(suffix=".json", body="[" * 5000)
def test_alloc_refuses_malformed_problem_files(capsys, home, suffix, body):
    path = home / f"problem{suffix}"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    assert_refused(*run_cli(capsys, "alloc", str(path)))


@pytest.mark.parametrize("argv", [
    ["alloc"],
    ["alloc", "/no/such/problem.yaml"],
    ["alloc", "--example", "nope"],
    ["alloc", "--example", "seed", "--objective", "bogus"],
    ["alloc", "--example", "seed", "--time-limit", "0"],
])
def test_alloc_refuses_bad_arguments(capsys, home, argv):
    assert_refused(*run_cli(capsys, *argv))


def test_undecodable_argv_bytes_are_a_clean_error(home):
    """A real process, so argv arrives as bytes the way a shell passes them."""
    import subprocess
    import sys

    for argv in ([b"alloc", b"/no/such/pr\xffblem.yaml"], [b"run", b"--dry-run", b"\xff\xfe count"]):
        res = subprocess.run([sys.executable, "-c", "from llmos.cli import entry; entry()", *argv],
                             capture_output=True, timeout=60, env={**os.environ, "LLMOS_HOME": str(home)})
        assert_refused(res.returncode, res.stdout.decode() + res.stderr.decode(errors="replace"))


# ── llmos chat ──────────────────────────────────────────────────────────────
@FUZZ
@given(max_tokens=st.one_of(st.integers(max_value=0).map(str), NOT_AN_INT))
@example(max_tokens="0")
def test_chat_refuses_bad_max_tokens_before_loading_a_model(capsys, home, max_tokens):
    rc, text = run_cli(capsys, "chat", f"--max-tokens={max_tokens}", "hello")
    assert_refused(rc, text)
    assert rc == 2                                   # the parser refused it: no model was loaded


# ── a garbage config.toml ───────────────────────────────────────────────────
@FUZZ
@given(body=st.one_of(st.binary(min_size=1, max_size=80), st.text(min_size=1, max_size=80)))
@example(body="garbage = [[[")
@example(body="engine = 5")
@example(body='[[remote]]\nname = 1')
@example(body=b"\xff\xfe\x00")
def test_models_with_a_garbage_config(capsys, home, body):
    cfg = home / "config.toml"
    if isinstance(body, bytes):
        cfg.write_bytes(body)
    else:
        cfg.write_text(body)
    rc, text = run_cli(capsys, "models")
    if rc == 0:                                      # the text happened to be a valid, empty config
        assert "Traceback" not in text
        return
    assert_refused(rc, text)
    assert "config" in text
