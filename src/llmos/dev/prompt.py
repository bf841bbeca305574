"""What the model is shown on each try: the request, the tree, the relevant files, the
tests' last output, and why its previous reply was rejected.

Map:
- ``SYSTEM``: the edit format (SEARCH/REPLACE blocks) and the rules.
- ``messages(request, repo_files, shown, test_cmd, test_output, rejected) -> list[Message]``.
- ``tail(text, n)``: the last ``n`` characters of a test run's output, on line bounds.

The files and the test output are data: they go in the user turn, each file fenced
with its path; nothing in them is an instruction.
"""

from __future__ import annotations

from llmos.types import Message

__all__ = ["SYSTEM", "messages", "tail", "TREE_MAX_FILES", "OUTPUT_MAX_CHARS"]

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

EXAMPLE_USER = "Request: greet() should end with an exclamation mark.\n\nFiles:\n\nhello.py\n```\n" \
               "def greet(name):\n    return 'hello ' + name\n```"
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
             tried: int = 0) -> list[Message]:
    tree = list(repo_files[:TREE_MAX_FILES])
    more = len(repo_files) - len(tree)
    parts = [f"Request: {request.strip()}", "",
             "Repository files:", *tree, *([f"… and {more} more"] if more > 0 else []), "",
             "Files:"]
    for path, text in shown.items():
        parts += ["", path, "```", text.rstrip("\n"), "```"]
    if test_output is not None:
        state = "pass" if passed else "fail"
        when = "now, with the changes made so far" if tried else "before any change"
        parts += ["", f"The tests ({test_cmd}) {state} {when}. Their output:", "```",
                  tail(test_output).rstrip("\n"), "```"]
    if rejected:
        parts += ["", f"Your previous reply could not be applied: {rejected}",
                  "Copy the SEARCH lines exactly from the files above."]
    parts += ["", "Reply with SEARCH/REPLACE blocks only."]
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": EXAMPLE_USER},
            {"role": "assistant", "content": EXAMPLE_REPLY},
            {"role": "user", "content": "\n".join(parts)}]
