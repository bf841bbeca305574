"""``llmos dev`` end to end on a scripted engine: the kernel's llm.generate, the tests run in
the sandbox, the diff shown, the person's approval before DIR changes."""

from __future__ import annotations

import json

TEST_CMD = ("--test-cmd", "python test_calc.py")


def test_fix_shown_and_applied_on_yes(dev_cli, tiny_repo, texts):
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "add(2, 3) should be 5", input="y\n")
    assert res.exit_code == 0, res.output
    assert "-    return a - b" in res.output and "+    return a + b" in res.output   # the diff shown
    assert "tests pass" in res.output and "applied" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"].replace("a - b", "a + b")


def test_approval_refused_leaves_repo_unchanged(dev_cli, tiny_repo, texts):
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "add(2, 3) should be 5", input="n\n")
    assert res.exit_code == 2, res.output
    assert "+    return a + b" in res.output
    assert "is unchanged" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]
    assert sorted(p.name for p in tiny_repo.iterdir()) == ["calc.py", "test_calc.py"]   # no caches left


def test_yes_applies_passing_change_without_asking(dev_cli, tiny_repo):
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--yes", "fix add")
    assert res.exit_code == 0, res.output
    assert "apply this diff" not in res.output
    assert "a + b" in (tiny_repo / "calc.py").read_text()


def test_garbage_reply_rejected_with_reason_and_retry_spent(dev_cli, tiny_repo, replies, texts):
    replies[:] = ["Sure! I would change the add function so that it adds.", texts["FIX"]]
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--json", "--yes", "fix add")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["tries_used"] == 2 and out["passed"] is True
    first = out["tries"][0]
    assert first["applied"] is False and "no SEARCH/REPLACE block" in first["reason"]
    assert out["applied"] == ["calc.py"]


def test_search_text_not_in_file_is_rejected(dev_cli, tiny_repo, replies, texts):
    replies[:] = ["calc.py\n<<<<<<< SEARCH\n    return a ** b\n=======\n    return a + b\n>>>>>>> REPLACE\n",
                  texts["FIX"]]
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--json", "fix add")
    out = json.loads(res.output.strip().splitlines()[-1])
    assert "not in the file" in out["tries"][0]["reason"]
    assert out["passed"] is True and out["applied"] == []         # --json without --yes applies nothing
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]


def test_tries_exhausted_says_so_and_applies_nothing(dev_cli, tiny_repo, replies, texts):
    replies[:] = [texts["WRONG"]]
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--tries", "2", "--yes", "fix add")
    assert res.exit_code == 1, res.output
    assert "tests still fail after 2 tries" in res.output
    assert "+    return a * b" in res.output                           # the diff is still shown
    assert "apply this diff" not in res.output                         # --yes never applies failing work
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]


def test_failing_run_asks_and_a_no_keeps_repo(dev_cli, tiny_repo, replies, texts):
    replies[:] = [texts["WRONG"]]
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--tries", "1", "fix add", input="n\n")
    assert res.exit_code == 1
    assert "although the tests fail" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]


def test_only_garbage_ends_with_nothing_to_apply(dev_cli, tiny_repo, replies, texts):
    replies[:] = ["```\nno idea\n```"]
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--tries", "2", "fix add")
    assert res.exit_code == 1
    assert "no usable edit in 2 tries" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]


def test_model_sees_the_failure_output(dev_cli, tiny_repo, replies, texts, monkeypatch):
    seen: list[str] = []
    from llmos.dev import agent

    real = agent.prompt.messages

    def spy(*a, **kw):
        msgs = real(*a, **kw)
        seen.append(msgs[-1]["content"])
        return msgs
    monkeypatch.setattr(agent.prompt, "messages", spy)
    again = "calc.py\n<<<<<<< SEARCH\ndef add(a, b):\n    return a * b\n=======\ndef add(a, b):\n" \
            "    return a + b\n>>>>>>> REPLACE\n"
    replies[:] = [texts["WRONG"], again]
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--json", "fix add")
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["tries_used"] == 2 and out["passed"] is True, out
    assert "-    return a - b" in out["diff"] and "+    return a + b" in out["diff"]   # against DIR, not try 1
    assert "add(2, 3) = -1" in seen[0] and "before any change" in seen[0]
    assert "add(2, 3) = 6" in seen[1] and "return a * b" in seen[1]    # the second try sees its own edit


def test_repo_that_is_not_a_directory(dev_cli, tmp_path):
    res = dev_cli("--repo", str(tmp_path / "nope"), "fix it")
    assert res.exit_code != 0
    assert "is not a directory" in str(res.exception)


def test_repo_without_tests(dev_cli, tmp_path):
    d = tmp_path / "notests"
    d.mkdir()
    (d / "main.py").write_text("print('hi')\n")
    res = dev_cli("--repo", str(d), "fix it")
    assert "has no tests to run" in str(res.exception)


def test_hanging_tests_are_stopped_and_reported(dev_cli, tiny_repo, texts):
    (tiny_repo / "test_calc.py").write_text("import time\ntime.sleep(60)\n")
    res = dev_cli("--repo", str(tiny_repo), "--test-cmd", "python test_calc.py", "--test-timeout", "2",
                  "--tries", "1", "--yes", "fix add")
    assert res.exit_code == 1
    assert "tests did not finish" in res.output and "2" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]


def test_bad_tries_and_format_are_one_line_errors(dev_cli, tiny_repo):
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--tries", "0", "fix add")
    assert "--tries: expected 1 to 10, got 0" in str(res.exception)
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--edit-format", "poem", "fix add")
    assert "--edit-format: expected blocks or whole" in str(res.exception)
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "   ")
    assert "request" in str(res.exception)


def test_a_model_call_that_never_ends_is_stopped_and_spends_its_try(dev_cli, tiny_repo, texts, engine_opts):
    engine_opts["step_delay_s"] = 3600          # one token an hour: no reply ever comes
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--model-timeout", "1", "--tries", "2", "fix add")
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if "model timed out" in ln]
    assert len(lines) == 2 and "no reply within 1 s (--model-timeout)" in lines[0]   # one line per try
    assert "no usable edit in 2 tries" in res.output
    assert (tiny_repo / "calc.py").read_text() == texts["BUGGY"]


def test_model_timeout_in_json_and_bad_value(dev_cli, tiny_repo, engine_opts):
    engine_opts["step_delay_s"] = 3600
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--model-timeout", "1", "--tries", "1", "--json", "fix add")
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["outcome"] == "no change" and out["tries"][0]["timed_out"] is True
    res = dev_cli("--repo", str(tiny_repo), *TEST_CMD, "--model-timeout", "0", "fix add")
    assert res.exit_code == 2 and "--model-timeout" in res.output
