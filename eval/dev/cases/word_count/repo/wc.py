def count_words(text):
    """The number of words in text (runs of whitespace separate words)."""
    return len(text.split(" "))
