"""python.run, python.run_file, shell.run: results, failures, files written, bad arguments."""

from __future__ import annotations

import pytest

from llmos.errors import InvalidArgument, NotFound, PermissionDenied, SandboxError, ToolError


def test_python_run_prints(reg, xctx):
    r = reg.call("python.run", {"code": "print([n * n for n in range(1, 11)][-1])"}, xctx)
    assert r.output["stdout"] == "100\n" and r.output["exit_code"] == 0
    assert "100" in r.summary and r.files == []


def test_python_run_save_as_and_import(reg, xctx, ws):
    code = "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n"
    r = reg.call("python.run", {"code": code, "save_as": "primes.py"}, xctx)
    assert r.files == ["primes.py"] and (ws / "primes.py").read_text() == code
    r = reg.call("python.run", {"code": "from primes import is_prime\n"
                                        "print([n for n in range(20) if is_prime(n)])"}, xctx)
    assert r.output["stdout"].strip() == "[2, 3, 5, 7, 11, 13, 17, 19]"


def test_python_sees_the_data_libraries(reg, xctx, ws):
    (ws / "t.csv").write_text("a,b\n1,2\n3,4\n")
    r = reg.call("python.run", {"code": "import pandas as pd\nprint(pd.read_csv('t.csv')['b'].sum())\n"
                                        "open('out.txt', 'w').write('done')"}, xctx)
    assert r.output["stdout"].strip() == "6"
    assert r.files == ["out.txt"] and (ws / "out.txt").read_text() == "done"


def test_python_failure_is_an_error_with_the_run(reg, xctx):
    with pytest.raises(ToolError) as ei:
        reg.call("python.run", {"code": "print('before')\nundefined_name"}, xctx)
    assert "NameError" in str(ei.value) and "exit 1" in str(ei.value)
    assert ei.value.result["stdout"] == "before\n" and "Traceback" in ei.value.result["stderr"]


def test_limit_is_a_sandbox_error(reg, xctx):
    with pytest.raises(SandboxError) as ei:
        reg.call("python.run", {"code": "import time\ntime.sleep(30)", "timeout_s": 1}, xctx)
    assert "1 s time limit" in str(ei.value) and ei.value.result["limit"] == "timeout"


def test_run_file_with_args(reg, xctx, ws):
    (ws / "echo.py").write_text("import sys\nprint(' '.join(sys.argv[1:]))\n")
    r = reg.call("python.run_file", {"path": "echo.py", "args": ["a", "b c"]}, xctx)
    assert r.output["stdout"] == "a b c\n"
    with pytest.raises(NotFound):
        reg.call("python.run_file", {"path": "nope.py"}, xctx)
    with pytest.raises(PermissionDenied):
        reg.call("python.run_file", {"path": "/usr/lib/python3/dist-packages/x.py"}, xctx)


def test_shell_run(reg, xctx, ws):
    (ws / "a.txt").write_text("1\n2\n3\n")
    r = reg.call("shell.run", {"command": "wc -l < a.txt && echo made > b.txt"}, xctx)
    assert r.output["stdout"].split()[0] == "3" and r.files == ["b.txt"]
    with pytest.raises(ToolError, match="exit 3"):
        reg.call("shell.run", {"command": "echo oops >&2; exit 3"}, xctx)


@pytest.mark.parametrize("tool,args,field", [
    ("python.run", {"code": ""}, "code"),
    ("python.run", {"code": "print(1)", "timeout_s": 0}, "timeout_s"),
    ("python.run", {"code": "print(1)", "timeout_s": 10_000}, "timeout_s"),
    ("shell.run", {}, "command"),
    ("python.run_file", {"path": "x.py", "args": "a b"}, "args"),
])
def test_bad_arguments(reg, xctx, tool, args, field):
    with pytest.raises(InvalidArgument) as ei:
        reg.call(tool, args, xctx)
    assert ei.value.field == field


def test_save_as_outside_is_denied(reg, xctx, tmp_path):
    with pytest.raises(PermissionDenied):
        reg.call("python.run", {"code": "print(1)", "save_as": "../evil.py"}, xctx)
    assert not (tmp_path / "evil.py").exists()
