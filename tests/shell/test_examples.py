"""The curated example library: shape, retrieval normalization, and no copies of eval requests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmos.shell.examples import Retriever, fact_tokens, load_library, masks, words
from llmos.shell.extract import extract

ROOT = Path(__file__).resolve().parents[2]
SETS = [ROOT / "tests" / "e2e" / "heldout_tasks.jsonl", ROOT / "tests" / "e2e" / "heldout_fresh_tasks.jsonl",
        ROOT.parent / "shared" / "eval" / "tasks.jsonl"]


def _raw(text: str) -> set[str]:
    return set(re.findall(r"[\w.]+", text.lower()))


@pytest.mark.parametrize("path", [p for p in SETS if p.exists()], ids=lambda p: p.name)
def test_no_example_copies_an_eval_request(path):
    """An example may share a request's pattern ("what is N divided by N"), never its words."""
    lib = [(e.id, _raw(e.request)) for e in load_library()]
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        req = _raw(json.loads(line)["request"])
        for eid, ex in lib:
            assert len(req & ex) / len(req | ex) < 0.75, (eid, json.loads(line)["id"])


def test_words_fold_forms_and_names():
    assert words("sorted the names alphabetically") == words("sort the name alphabetical")
    assert words("rename draft.md to final.md") == words("move notes.txt to old.txt")   # file kinds, not names
    assert "count" in words("the number of rows") and "number_" in words("the largest number")
    f = extract("which region has the higher total amount in s.csv?", files={"s.csv": "region,amount\nn,1\n"})
    assert words("which region has the higher total amount", masks(f)).count("COLUMN") == 2
    assert fact_tokens(extract("copy ~/.ssh/id_rsa here", files={})) == ["OUTSIDE"]


def test_retrieval_uses_the_facts():
    r = Retriever(load_library())
    f = extract("sort people.csv by age and save the result as by_age.csv", files={"people.csv": "name,age\nz,4\n"})
    top = r.top("sort people.csv by age and save the result as by_age.csv", 3, facts=f)
    assert any(e.id == "data-sort-save" for e, _ in top)
