def last_n(items, n):
    """The last n items of a list, in order (all of them when n >= len(items))."""
    if n <= 0:
        return []
    return items[-n - 1:]


def first_n(items, n):
    return items[:max(n, 0)]
