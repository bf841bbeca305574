from words import is_palindrome


def test_plain():
    assert is_palindrome("level")
    assert not is_palindrome("hello")


def test_case_and_spaces():
    assert is_palindrome("Never odd or even")
    assert is_palindrome("A Santa at NASA")
