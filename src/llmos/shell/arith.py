"""Arithmetic read from English, for the planner's pre-pass (``extract``).

Map:
- ``arithmetic(text) -> str | None``: "17 times 23 plus 4" -> "17 * 23 + 4";
  "15 percent of 240" -> "(15 / 100) * 240"; "80 increased by 15 percent" ->
  "80 * (1 + 15 / 100)"; "what percent is 30 of 120" -> "30 / 120 * 100";
  "3 boxes with 24 pencils each" -> "3 * 24"; "half of 90" -> "90 / 2";
  "subtract 45 from 300" -> "(300 - 45)"; "add 2 and 3" -> "2 + 3";
  "the average of 3, 5 and 10" -> "(3 + 5 + 10) / 3". None when the text holds no
  arithmetic (a single number is not an expression).

Generic readings of English only: phrase rewrites first (percent changes, "each",
halves and doubles), then operator words become operators and the longest run of
numbers and operators is the expression. The calc tool computes it exactly.
"""

from __future__ import annotations

import re

__all__ = ["arithmetic"]

_NUM = r"\d+(?:\.\d+)?"
_NUM_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_WORD_NUMS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
              "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20,
              "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000}
_OPS = [  # longest phrases first
    (r"to the power of|raised to(?: the power of)?|\^|\*\*", "^"),
    (r"multiplied by|times|\bx\b|×|\*", "*"),
    (r"divided by|over|÷|/", "/"),
    (r"plus|added to|\+", "+"),
    (r"minus|less|take away|-", "-"),
    (r"mod(?:ulo)?|remainder of .* divided by", "%"),
]
_PCT = r"\s*(?:%|percent|per cent)"
_UP = r"increased by|raised by|plus|more by|grown by|up by"
_DOWN = r"decreased by|reduced by|minus|less|lowered by|down by|discounted by"
_THINGS = r"(?:[a-z]+\s+){0,3}"
# phrase -> expression, applied in order before the operator words
_PHRASES: list[tuple[str, str]] = [
    # "what percent is 30 of 120", "30 is what percentage of 120", "30 as a percentage of 120"
    (rf"what (?:percent|percentage) (?:is|of)\s+({_NUM})\s+(?:is\s+)?of\s+({_NUM})", r" (\1 / \2 * 100) "),
    (rf"({_NUM})\s+(?:is what|as a) (?:percent|percentage) of\s+({_NUM})", r" (\1 / \2 * 100) "),
    # "increase 80 by 15 percent", "80 increased by 15%", "15 percent more than 80"
    (rf"(?:increase|raise)\s+({_NUM})\s+by\s+({_NUM}){_PCT}", r" (\1 * (1 + \2 / 100)) "),
    (rf"({_NUM})\s+(?:{_UP})\s+({_NUM}){_PCT}", r" (\1 * (1 + \2 / 100)) "),
    (rf"({_NUM}){_PCT}\s+more than\s+({_NUM})", r" (\2 * (1 + \1 / 100)) "),
    (rf"add\s+({_NUM}){_PCT}\s+to\s+({_NUM})", r" (\2 * (1 + \1 / 100)) "),
    (rf"(?:decrease|reduce|lower|discount)\s+({_NUM})\s+by\s+({_NUM}){_PCT}", r" (\1 * (1 - \2 / 100)) "),
    (rf"({_NUM})\s+(?:{_DOWN})\s+({_NUM}){_PCT}", r" (\1 * (1 - \2 / 100)) "),
    (rf"({_NUM}){_PCT}\s+(?:less than|off|discount on|off of)\s+({_NUM})", r" (\2 * (1 - \1 / 100)) "),
    (rf"(?:take|knock)\s+({_NUM}){_PCT}\s+off\s+({_NUM})", r" (\2 * (1 - \1 / 100)) "),
    # "60 dollars after a 25% discount", "80 with a 15% tip"
    (rf"({_NUM})\s+(?:[a-z]+\s+)?(?:after|with|minus|less)\s+(?:a|an|the)?\s*({_NUM}){_PCT}\s+"
     r"(?:discount|reduction|decrease|cut|drop|off)", r" (\1 * (1 - \2 / 100)) "),
    (rf"({_NUM})\s+(?:[a-z]+\s+)?(?:after|with|plus)\s+(?:a|an|the)?\s*({_NUM}){_PCT}\s+"
     r"(?:increase|rise|raise|markup|tax|tip|interest|growth)", r" (\1 * (1 + \2 / 100)) "),
    # "subtract 45 from 300", "multiply 6 by 7", "divide 1000 by 8"
    (rf"\bsubtract\s+({_NUM})\s+from\s+({_NUM})", r" (\2 - \1) "),
    (rf"\bmultiply\s+({_NUM})\s+(?:by|and|with)\s+({_NUM})", r" (\1 * \2) "),
    (rf"\bdivide\s+({_NUM})\s+by\s+({_NUM})", r" (\1 / \2) "),
    (rf"\b(?:the )?difference between\s+({_NUM})\s+and\s+({_NUM})", r" (\1 - \2) "),
    (rf"\b(?:the )?product of\s+({_NUM})\s+and\s+({_NUM})", r" (\1 * \2) "),
    # "3 boxes with 24 pencils each", "4 tickets at 12 dollars each"
    (rf"({_NUM})\s+{_THINGS}(?:with|of|containing|holding|at|for|costing|costs?|weighs?|weighing|holds?|"
     rf"contains?|has|have)\s+({_NUM})\s+{_THINGS}each\b",
     r" (\1 * \2) "),
    (rf"({_NUM})\s+{_THINGS}each (?:with|of|containing|holding|at|costing)\s+({_NUM})", r" (\1 * \2) "),
    (rf"\bhalf of\s+({_NUM})", r" (\1 / 2) "),
    (rf"\ba third of\s+({_NUM})", r" (\1 / 3) "),
    (rf"\ba quarter of\s+({_NUM})", r" (\1 / 4) "),
    (rf"\b(?:double|twice)\s+({_NUM})", r" (2 * \1) "),
    (rf"\btriple\s+({_NUM})", r" (3 * \1) "),
]


def _phrases(s: str) -> str:
    for pat, rep in _PHRASES:
        s = re.sub(pat, rep, s)
    return s


def _num(tok: str) -> str | None:
    t = tok.replace(",", "")
    if re.fullmatch(r"-?\d+(?:\.\d+)?", t):
        return t
    if t.lower() in _WORD_NUMS:
        return str(_WORD_NUMS[t.lower()])
    return None


def arithmetic(text: str) -> str | None:
    """Read an arithmetic expression from English; None when the text holds none."""
    s = " " + text.lower().replace("?", " ").replace("what's", "what is") + " "
    s = re.sub(r"(\d),(\d{3})", r"\1\2", s)
    s = re.sub(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}:\d{2}\b", " ", s)     # dates and times are not sums
    s = re.sub(r"\b(" + "|".join(_WORD_NUMS) + r")\b(?=\s+(?:[a-z]+\s+){0,3}(?:with|of|at|each)\b)",
               lambda m: str(_WORD_NUMS[m.group(1)]), s)
    s = _phrases(s)
    s = re.sub(rf"\badd\s+({_NUM}(?:\s*(?:,|and)\s*{_NUM})+)",
               lambda m: " " + " + ".join(re.findall(_NUM, m.group(1))) + " ", s)
    s = re.sub(rf"\)\s+and\s+(add|plus|subtract|minus|take away|times|multiply by|divide by)\s+({_NUM})",
               lambda m: ") " + {"add": "+", "plus": "+", "subtract": "-", "minus": "-", "take away": "-",
                                 "times": "*", "multiply by": "*", "divide by": "/"}[m.group(1)] + " " + m.group(2), s)
    # "X percent of Y" / "X% of Y"
    s = re.sub(rf"({_NUM}){_PCT}\s+of\s+", r"(\1 / 100) * ", s)
    s = re.sub(rf"({_NUM}){_PCT}", r"(\1 / 100)", s)
    s = re.sub(rf"square root of\s+({_NUM})", r"sqrt(\1)", s)
    s = re.sub(rf"({_NUM})\s+squared", r"\1 ^ 2", s)
    s = re.sub(rf"({_NUM})\s+cubed", r"\1 ^ 3", s)
    # average / sum of a list: "the average of 3, 5 and 10"
    m = re.search(r"(average|mean|sum|total) of\s+((?:-?\d+(?:\.\d+)?(?:\s*,\s*|\s+and\s+|\s+))+)", s)
    if m:
        nums = _NUM_RE.findall(m.group(2))
        if len(nums) >= 2:
            total = " + ".join(nums)
            return f"({total}) / {len(nums)}" if m.group(1) in ("average", "mean") else total
    for pat, op in _OPS:
        s = re.sub(rf"\s*(?:{pat})\s*", f" {op} ", s)
    toks = re.findall(r"sqrt\(\d+(?:\.\d+)?\)|\d+(?:\.\d+)?|[a-z]+|[-+*/%()^]", s)
    ops = ("+", "-", "*", "/", "%", "^", "(", ")")

    def weight(seq: list[str]) -> int:  # operands; a sqrt(...) alone is a whole expression
        return sum(2 if x.startswith("sqrt") else 1 for x in seq if x not in ops)

    best: list[str] = []
    cur: list[str] = []
    for t in toks + ["<end>"]:
        n = _num(t) if not t.startswith("sqrt") else t
        if n is not None or t in ops:
            cur.append(n if n is not None else t)
            continue
        if t in ("by", "the", "and", "then"):   # "multiplied by", "and then"
            continue
        if weight(cur) >= 2 and len(cur) > len(best):
            best = cur
        cur = []
    best = _balanced(best)
    while best and best[-1] in ("+", "-", "*", "/", "%", "^", "("):
        best.pop()
    while best and best[0] in ("+", "*", "/", "%", "^", ")"):
        best.pop(0)
    best = _balanced(best)
    if weight(best) < 2 or best.count("(") != best.count(")"):
        return None
    expr = " ".join(best).replace("( ", "(").replace(" )", ")").replace("^", "**")
    return expr if re.search(r"[-+*/%]|sqrt", expr) else None


def _balanced(seq: list[str]) -> list[str]:
    """Drop unmatched parentheses at the ends of a token run ("( 3 * 4" -> "3 * 4")."""
    seq = list(seq)
    while seq and seq.count("(") > seq.count(")") and seq[0] == "(":
        seq.pop(0)
    while seq and seq.count(")") > seq.count("(") and seq[-1] == ")":
        seq.pop()
    return seq
