from llmos.cli import main
from llmos.cli.bench import available


def test_lists_every_bench_script(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out.split()
    assert out == available() and {"engine", "priority", "syscall"} <= set(out)


def test_unknown_bench_is_one_line_with_hint(capsys):
    assert main(["bench", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no benchmark 'nope'" in err and "hint: llmos bench --list" in err
