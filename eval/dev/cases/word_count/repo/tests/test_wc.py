import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wc import count_words  # noqa: E402


def test_simple():
    assert count_words("one two three") == 3


def test_extra_spaces():
    assert count_words("  one   two\nthree ") == 3


def test_empty():
    assert count_words("") == 0
