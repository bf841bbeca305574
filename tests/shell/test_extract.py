"""The deterministic pre-pass."""

from __future__ import annotations

import pytest

from llmos.shell.extract import arithmetic, duration_s, extract


@pytest.mark.parametrize("text,expr", [
    ("what is 17 times 23 plus 4?", "17 * 23 + 4"),
    ("what is 15 percent of 240?", "(15 / 100) * 240"),
    ("how much is 12% of 80", "(12 / 100) * 80"),
    ("what is 2 to the power of 10", "2 ** 10"),
    ("what is the square root of 144", "sqrt(144)"),
    ("what is 7 squared", "7 ** 2"),
    ("what is 1,234 divided by 2", "1234 / 2"),
    ("what is the average of 3, 5 and 10?", "(3 + 5 + 10) / 3"),
    ("what is (3 + 4) * 5", "(3 + 4) * 5"),
    ("I have 3 apples", None),
    ("rename draft.md to final.md", None),
])
def test_arithmetic(text, expr):
    assert arithmetic(text) == expr


@pytest.mark.parametrize("text,secs", [
    ("remind me in 2 seconds to stretch", 2), ("in 5 minutes check the oven", 300),
    ("remind me in an hour", 3600), ("stretch now", None)])
def test_duration(text, secs):
    assert duration_s(text) == secs


def test_workspace_and_mentions(tmp_path):
    (tmp_path / "sales.csv").write_text("month,region,amount\n1,n,2\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").write_text("x")
    f = extract("plot amount from sales.csv and save it as chart.png, then copy ~/.ssh/id_rsa "
                "and /etc/shadow; delete the .tmp files; add 'buy milk'", tmp_path)
    assert ("sales.csv", 26) in f.files and all(n != ".hidden" for n, _ in f.files)
    assert f.dirs == ["sub"]
    assert f.mentioned == ["sales.csv", "chart.png"]
    assert f.existing == ["sales.csv"] and f.new_files == ["chart.png"]
    assert "~/.ssh/id_rsa" in f.outside and "/etc/shadow" in f.outside
    assert f.globs == ["*.tmp"]
    assert f.quoted == ["buy milk"]
    assert f.columns == {"sales.csv": ["month", "region", "amount"]}
    text = "\n".join(f.lines())
    assert "Columns of sales.csv: month, region, amount" in text and "Patterns: *.tmp" in text


def test_payload_after_colon():
    f = extract("create a file called notes.txt that contains the line: buy milk", files={})
    assert f.payload == "buy milk" and f.mentioned == ["notes.txt"]


def test_files_stand_in():
    f = extract("sum x in a.csv", files={"a.csv": "x,y\n1,2\n", "pics/": ""})
    assert f.files == [("a.csv", 8)] and f.dirs == ["pics"] and f.columns == {"a.csv": ["x", "y"]}


def test_terms_folders_and_outside_parents():
    f = extract("which file mentions the word invoice?", files={"a.txt": "x"})
    assert f.terms == ["invoice"]
    f = extract("move report.txt into the archive folder", files={"report.txt": "x", "archive/": ""})
    assert f.mentioned == ["report.txt", "archive"] and f.existing == ["report.txt"]
    f = extract("make a folder called backup", files={})
    assert f.new_files == ["backup"]
    f = extract("move data.csv to ../data.csv", files={"data.csv": "a\n1\n"})
    assert f.outside == ["../data.csv"]            # a parent path leaves the workspace


def test_cells_numeric_columns_target_and_question():
    files = {"orders.csv": "product,quantity\napples,5\npears,3\n"}
    f = extract("how many apples were ordered in total according to orders.csv?", files=files)
    assert f.values == [("product", "apples")] and f.numeric == {"orders.csv": ["quantity"]}
    assert f.aggregate == "sum" and f.question
    f = extract("which product sold the least in orders.csv?", files=files)
    assert f.target == "product" and f.extreme == "min"
    f = extract("from p.csv, which phone is the cheapest with at least 128 GB?", files={"p.csv": "model,price\nx,1\n"})
    assert f.extreme == "min" and f.target is None       # "at least" is a bound, not the end asked for
    assert not extract("sort n.txt and save it as s.txt", files={}).question
