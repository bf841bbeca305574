"""text.* tools: sort, unique, numbers, replace, extract."""

from __future__ import annotations

import pytest

from llmos.errors import InvalidArgument, NotFound, PermissionDenied


def test_sort_numbers_and_save(call, ws):
    (ws / "numbers.txt").write_text("42\n7\n19\n3\n")
    r = call("text.sort", path="numbers.txt", save_to="sorted.txt")
    assert r.output["lines"] == ["3", "7", "19", "42"] and r.output["numeric"]
    assert (ws / "sorted.txt").read_text().split() == ["3", "7", "19", "42"]
    assert r.files == ["sorted.txt"]
    r = call("text.sort", path="numbers.txt", descending=True)
    assert r.output["lines"] == ["42", "19", "7", "3"] and not r.files


def test_sort_text_and_forced_number_mode(call, ws):
    (ws / "w.txt").write_text("pear\nApple\nbanana\napple\n")
    assert call("text.sort", path="w.txt").output["lines"] == ["Apple", "apple", "banana", "pear"]
    assert call("text.sort", path="w.txt", unique=True, by="text").output["count"] == 4
    with pytest.raises(InvalidArgument) as ei:
        call("text.sort", path="w.txt", by="number")
    assert ei.value.field == "by"


def test_unique_keeps_first(call, ws):
    (ws / "u.txt").write_text("b\na\nb\nA\n")
    r = call("text.unique", path="u.txt")
    assert r.output["lines"] == ["b", "a", "A"] and r.output["removed"] == 1
    assert call("text.unique", path="u.txt", ignore_case=True).output["lines"] == ["b", "a"]


def test_numbers_are_exact(call, ws):
    (ws / "n.txt").write_text("costs: 0.1 and 0.2\n-3 items, 1,000 total\n")
    r = call("text.numbers", path="n.txt")
    assert r.output["numbers"] == [0.1, 0.2, -3, 1000]
    assert r.output["sum"] == 997.3 and r.output["min"] == -3 and r.output["max"] == 1000
    (ws / "none.txt").write_text("no digits")
    assert call("text.numbers", path="none.txt").output["count"] == 0


def test_replace_in_place_and_into_new_file(call, ws):
    (ws / "r.txt").write_text("cat and cat\n")
    r = call("text.replace", path="r.txt", find="cat", replace="dog", save_to="r2.txt")
    assert (ws / "r2.txt").read_text() == "dog and dog\n" and (ws / "r.txt").read_text() == "cat and cat\n"
    assert r.output["replacements"] == 2
    call("text.replace", path="r.txt", find="cat", replace="cow")
    assert (ws / "r.txt").read_text() == "cow and cow\n"


def test_text_errors(call, ws):
    with pytest.raises(NotFound):
        call("text.sort", path="missing.txt")
    (ws / "a.txt").write_text("1\n")
    with pytest.raises(PermissionDenied):
        call("text.sort", path="a.txt", save_to="../out.txt")
    with pytest.raises(PermissionDenied):
        call("text.numbers", path="/etc/passwd")
    with pytest.raises(InvalidArgument):
        call("text.replace", path="a.txt", find="", replace="x")


THREAD = ("From: Anna <anna.kowalski@north-wind.com>\nCc: billing+eu@north-wind.com, Anna.Kowalski@north-wind.com.\n"
          "Docs: https://example.org/a?b=1, call +1 (555) 123-4567 before 2026-03-02.\n"
          "Logged 2026-03-02 09:04:17\n"
          "Not mail: a@b, @handle, x@y.z1\n")


def test_extract_email_addresses_once_each_in_order_and_save(call, ws):
    (ws / "thread.txt").write_text(THREAD)
    r = call("text.extract", path="thread.txt", what="email", save_to="emails.txt")
    assert r.output["items"] == ["anna.kowalski@north-wind.com", "billing+eu@north-wind.com"]
    assert (ws / "emails.txt").read_text() == "anna.kowalski@north-wind.com\nbilling+eu@north-wind.com\n"
    assert r.files == ["emails.txt"] and "2 different email addresses" in r.summary
    every = call("text.extract", path="thread.txt", what="email", unique=False)
    assert every.output["count"] == 3 and not every.files


def test_extract_links_dates_phones_and_a_pattern(call, ws):
    (ws / "thread.txt").write_text(THREAD)
    assert call("text.extract", path="thread.txt", what="url").output["items"] == ["https://example.org/a?b=1"]
    assert call("text.extract", path="thread.txt", what="date").output["items"] == ["2026-03-02"]   # once
    assert call("text.extract", path="thread.txt", what="phone").output["items"] == ["+1 (555) 123-4567"]
    r = call("text.extract", path="thread.txt", what="pattern", pattern=r"\d{4}-\d\d-\d\d")
    assert r.output["items"] == ["2026-03-02"]


@pytest.mark.parametrize("args", [{"what": "pattern"}, {"what": "pattern", "pattern": "(unclosed"}])
def test_extract_a_missing_or_broken_pattern_names_the_field(call, ws, args):
    (ws / "t.txt").write_text("x")
    with pytest.raises(InvalidArgument) as ei:
        call("text.extract", path="t.txt", **args)
    assert ei.value.field == "pattern"
