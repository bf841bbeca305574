"""Reading a repository: the test command detected, the files shown, the bad-input errors."""

from __future__ import annotations

import json

import pytest

from llmos.dev.repo import PYTEST_CMD, detect_tests, is_test, open_repo, relevant, scratch_copy, unified
from llmos.errors import InvalidArgument


def _make(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.mark.parametrize("files, cmd, source", [
    ({"Makefile": "all:\n\ttrue\n\ntest:\n\tpython -m unittest\n", "a.py": ""}, "make test", "Makefile"),
    ({"package.json": json.dumps({"scripts": {"test": "jest"}}), "a.js": ""}, "npm test", "package.json"),
    ({"pyproject.toml": "[tool.pytest.ini_options]\n", "a.py": ""}, PYTEST_CMD, "pytest"),
    ({"src/a.py": "", "tests/test_a.py": ""}, PYTEST_CMD, "pytest"),
    ({"a.py": "", "a_test.py": ""}, PYTEST_CMD, "pytest"),
])
def test_detects_the_test_command(tmp_path, files, cmd, source):
    repo = open_repo(_make(tmp_path / "r", files))
    assert (repo.test_cmd, repo.test_source) == (cmd, source)


def test_makefile_without_test_target_falls_through(tmp_path):
    root = _make(tmp_path / "r", {"Makefile": "all:\n\ttrue\n", "main.py": ""})
    assert detect_tests(root, ["Makefile", "main.py"]) is None


def test_no_tests_is_one_clear_error(tmp_path):
    with pytest.raises(InvalidArgument, match="has no tests to run") as e:
        open_repo(_make(tmp_path / "r", {"main.py": "print(1)\n"}))
    assert "--test-cmd" in e.value.hint


def test_test_cmd_wins(tmp_path):
    repo = open_repo(_make(tmp_path / "r", {"main.py": ""}), "./check.sh")
    assert (repo.test_cmd, repo.test_source) == ("./check.sh", "--test-cmd")


@pytest.mark.parametrize("bad", ["missing", "file"])
def test_not_a_directory(tmp_path, bad):
    p = tmp_path / bad
    if bad == "file":
        p.write_text("x")
    with pytest.raises(InvalidArgument, match="is not a directory"):
        open_repo(p)


def test_skipped_folders_and_binaries_are_not_read_or_copied(tmp_path):
    root = _make(tmp_path / "r", {"a.py": "x = 1\n", "test_a.py": "", ".git/config": "x",
                                  "node_modules/m/index.js": "", "__pycache__/a.pyc": ""})
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    repo = open_repo(root)
    assert repo.files == ("a.py", "test_a.py")
    copy = scratch_copy(repo)
    try:
        assert copy != root and (copy / "a.py").read_text() == "x = 1\n"
        assert not (copy / ".git").exists() and not (copy / "node_modules").exists()
    finally:
        import shutil

        shutil.rmtree(copy.parent)


def test_relevant_puts_named_files_first_within_budget(tmp_path):
    files = {"calc.py": "def add(a, b):\n    return a - b\n", "other.py": "y = 2\n" * 10,
             "test_calc.py": "from calc import add\n", "poetry.lock": "x" * 10}
    repo = open_repo(_make(tmp_path / "r", files))
    texts = dict(files)
    shown = relevant(repo, texts, "fix add in calc.py", "test_calc.py:3: AssertionError", 1000)
    assert shown[:2] == ["test_calc.py", "calc.py"] or shown[:2] == ["calc.py", "test_calc.py"]
    assert "poetry.lock" not in shown
    assert relevant(repo, texts, "fix add in calc", "", 40) == ["calc.py"]   # the budget: one file


def test_is_test():
    assert is_test("test_a.py") and is_test("tests/helpers.py") and is_test("src/a.test.js")
    assert not is_test("src/a.py") and not is_test("contest.py")


def test_unified_diff_of_new_and_changed_files():
    assert unified("a.py", "x = 1\n", "x = 2\n").splitlines()[:2] == ["--- a/a.py", "+++ b/a.py"]
    assert "+++ b/new.py" in unified("new.py", None, "y\n") and "--- /dev/null" in unified("new.py", None, "y\n")
