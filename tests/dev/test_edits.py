"""The model's reply -> edits -> new file texts: the three formats, and every rejection."""

from __future__ import annotations

import pytest

from llmos.dev.edits import EditRejected, apply, parse

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"


def test_search_replace_block():
    reply = "Here you go:\ncalc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
    assert apply(parse(reply), {"calc.py": CALC}) == {"calc.py": CALC.replace("a - b", "a + b")}


def test_block_path_in_markup_and_two_blocks_one_file():
    reply = ("**calc.py**\n```python\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n"
             ">>>>>>> REPLACE\n<<<<<<< SEARCH\n    return a * b\n=======\n    return b * a\n>>>>>>> REPLACE\n```")
    out = apply(parse(reply), {"calc.py": CALC})["calc.py"]
    assert "return a + b" in out and "return b * a" in out


def test_unified_diff():
    reply = ("```diff\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n"
             "+    return a + b\n```\n")
    assert apply(parse(reply), {"calc.py": CALC})["calc.py"] == CALC.replace("a - b", "a + b")


def test_unified_diff_new_file():
    reply = "--- /dev/null\n+++ b/util.py\n@@ -0,0 +1,2 @@\n+def one():\n+    return 1\n"
    assert apply(parse(reply), {}) == {"util.py": "def one():\n    return 1\n"}


def test_whole_file_in_fence_after_path():
    reply = "calc.py\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert apply(parse(reply), {"calc.py": CALC}) == {"calc.py": "def add(a, b):\n    return a + b\n"}


def test_empty_search_creates_or_appends():
    reply = ("new.py\n<<<<<<< SEARCH\n=======\nX = 1\n>>>>>>> REPLACE\n"
             "calc.py\n<<<<<<< SEARCH\n=======\ndef sub(a, b):\n    return a - b\n>>>>>>> REPLACE\n")
    out = apply(parse(reply), {"calc.py": CALC})
    assert out["new.py"] == "X = 1\n"
    assert out["calc.py"].startswith(CALC) and out["calc.py"].endswith("\n\ndef sub(a, b):\n    return a - b\n")


def test_loose_match_reindents():
    reply = "calc.py\n<<<<<<< SEARCH\nreturn a - b\n=======\nreturn a + b\n>>>>>>> REPLACE\n"
    assert apply(parse(reply), {"calc.py": CALC})["calc.py"] == CALC.replace("a - b", "a + b")


@pytest.mark.parametrize("reply, reason", [
    ("", "empty"),
    ("I think add should add.", "no SEARCH/REPLACE block"),
    ("<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n", "no file path"),
])
def test_garbage_is_rejected(reply, reason):
    with pytest.raises(EditRejected, match=reason):
        parse(reply)


@pytest.mark.parametrize("reply, reason", [
    ("calc.py\n<<<<<<< SEARCH\n    return a ** b\n=======\n    x\n>>>>>>> REPLACE\n", "not in the file"),
    ("calc.py\n<<<<<<< SEARCH\n    return\n=======\n    x\n>>>>>>> REPLACE\n", "not in the file"),
    ("../evil.py\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n", "stay inside the repository"),
    ("/etc/passwd\n```\nroot\n```\n", "stay inside the repository"),
    (".git/config\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n", "not edited"),
    ("calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a +\n>>>>>>> REPLACE\n", "not valid Python"),
    ("gone.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n", "no such file"),
    ("calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a - b\n>>>>>>> REPLACE\n", "changes nothing"),
])
def test_bad_edit_is_rejected_with_reason(reply, reason):
    with pytest.raises(EditRejected, match=reason):
        apply(parse(reply), {"calc.py": CALC})


def test_search_text_must_be_unique():
    reply = "d.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 3\n>>>>>>> REPLACE\n"
    with pytest.raises(EditRejected, match="appears 2 times; include more lines"):
        apply(parse(reply), {"d.py": "x = 1\ny = 2\nx = 1\n"})


def test_protected_test_lines_stay_but_a_test_may_be_added():
    tests = {"test_calc.py": "def test_add():\n    assert add(2, 3) == 5\n"}
    change = "test_calc.py\n<<<<<<< SEARCH\n    assert add(2, 3) == 5\n=======\n    assert add(2, 3) == -1\n>>>>>>> REPLACE\n"
    with pytest.raises(EditRejected, match="one of the project's tests"):
        apply(parse(change), tests, {"test_calc.py"})
    add = "test_calc.py\n<<<<<<< SEARCH\n=======\ndef test_more():\n    pass\n>>>>>>> REPLACE\n"
    assert "def test_more" in apply(parse(add), tests, {"test_calc.py"})["test_calc.py"]


def test_one_bad_edit_rejects_the_whole_reply():
    reply = ("calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
             "calc.py\n<<<<<<< SEARCH\n    nope\n=======\n    x\n>>>>>>> REPLACE\n")
    texts = {"calc.py": CALC}
    with pytest.raises(EditRejected):
        apply(parse(reply), texts)
    assert texts == {"calc.py": CALC}
