"""What the model is shown on each try: the request, the tree, the relevant files, the
tests' last output, and why its previous reply was rejected.

Map:
- ``SYSTEM`` / ``SYSTEM_WHOLE``: the edit format (SEARCH/REPLACE blocks, or whole files)
  and the rules; one worked example (a failing test, the fix in the code) precedes the task.
- ``messages(request, repo_files, shown, test_cmd, test_output, passed, rejected, tried,
  tests, edit_format) -> list[Message]``: code files first, the tests apart ("they decide").
- ``tail(text, n)``: the last ``n`` characters of a test run's output, on line bounds.

The files and the test output are data: they go in the user turn, each file fenced
with its path; nothing in them is an instruction.
"""

from __future__ import annotations

from llmos.types import Message

__all__ = ["SYSTEM", "SYSTEM_WHOLE", "FORMATS", "messages", "tail", "TREE_MAX_FILES", "OUTPUT_MAX_CHARS"]

FORMATS = ("blocks", "whole")  # what the model is asked for: SEARCH/REPLACE blocks, or whole files
TREE_MAX_FILES = 200          # paths listed in the tree
OUTPUT_MAX_CHARS = 3000       # test output shown (its end: where the failures are summed up)

SYSTEM = """You are a careful software engineer. You change a repository so that it does what the \
person asks and its tests pass.

Reply with the changes only, as SEARCH/REPLACE blocks. Each block is the file's path on its own \
line, then:
<<<<<<< SEARCH
lines copied exactly from the current file
=======
the lines that replace them
>>>>>>> REPLACE

Rules:
- SEARCH copies a few whole lines of the file exactly as shown, enough to be unique.
- To add code at the end of a file, or to create a new file, leave SEARCH empty.
- Change the code, not the existing tests, unless the person asks for a test.
- Keep every change small. Several blocks may follow each other. No explanations."""

SYSTEM_WHOLE = """You are a careful software engineer. You change a repository so that it does what the \
person asks and its tests pass.

Reply with each file you change, whole: its path on its own line, then a fenced code block \
holding the complete new text of that file. Write nothing else.

Rules:
- Give the whole file, every line of it, not only the part that changes.
- To create a new file, give its path and its text the same way.
- Change the code, not the existing tests, unless the person asks for a test.
- Change only the files that must change. No explanations."""

EXAMPLE_USER = """Request: greet() should end with an exclamation mark.

Code files (change these):

hello.py
```
def greet(name):
    return 'hello ' + name
```

Test files (they decide; do not change their lines):

test_hello.py
```
from hello import greet

def test_greet():
    assert greet('ann') == 'hello ann!'
```

The tests fail. Their output:
```
E       AssertionError: assert 'hello ann' == 'hello ann!'
```

Reply with SEARCH/REPLACE blocks only."""
EXAMPLE_WHOLE = "hello.py\n```python\ndef greet(name):\n    return 'hello ' + name + '!'\n```"
EXAMPLE_REPLY = "hello.py\n<<<<<<< SEARCH\n    return 'hello ' + name\n=======\n" \
                "    return 'hello ' + name + '!'\n>>>>>>> REPLACE"


def tail(text: str, n: int = OUTPUT_MAX_CHARS) -> str:
    if len(text) <= n:
        return text
    cut = text[-n:]
    nl = cut.find("\n")
    return "…\n" + (cut[nl + 1:] if 0 <= nl < 200 else cut)


def messages(request: str, repo_files: list[str] | tuple[str, ...], shown: dict[str, str], test_cmd: str,
             test_output: str | None, passed: bool | None, rejected: str | None = None,
             tried: int = 0, tests: frozenset[str] | set[str] = frozenset(),
             edit_format: str = "blocks") -> list[Message]:
    """``tests``: the shown files that are the project's tests (listed apart, after the code)."""
    tree = list(repo_files[:TREE_MAX_FILES])
    more = len(repo_files) - len(tree)
    parts = [f"Request: {request.strip()}", "",
             "Repository files:", *tree, *([f"… and {more} more"] if more > 0 else [])]
    for title, group in (("Code files (change these):", [p for p in shown if p not in tests]),
                         ("Test files (they decide; do not change their lines):", [p for p in shown if p in tests])):
        if not group:
            continue
        parts += ["", title]
        for path in group:
            parts += ["", path, "```", shown[path].rstrip("\n"), "```"]
    if test_output is not None:
        state = "pass" if passed else "fail"
        when = "now, with the changes made so far" if tried else "before any change"
        parts += ["", f"The tests ({test_cmd}) {state} {when}. Their output:", "```",
                  tail(test_output).rstrip("\n"), "```"]
    whole = edit_format == "whole"
    if rejected:
        parts += ["", f"Your previous reply could not be applied: {rejected}"]
        if not whole:
            parts += ["Copy the SEARCH lines exactly from the files above."]
    ask = "Reply with each changed file, whole, after its path." if whole else \
        "Reply with SEARCH/REPLACE blocks only."
    parts += ["", ask]
    example = EXAMPLE_USER.replace("Reply with SEARCH/REPLACE blocks only.", ask)
    return [{"role": "system", "content": SYSTEM_WHOLE if whole else SYSTEM},
            {"role": "user", "content": example},
            {"role": "assistant", "content": EXAMPLE_WHOLE if whole else EXAMPLE_REPLY},
            {"role": "user", "content": "\n".join(parts)}]
