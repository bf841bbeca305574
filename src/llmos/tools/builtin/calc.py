"""calc.eval: exact arithmetic from an expression or plain words, never ``eval``.

``normalize`` turns everyday phrasing into arithmetic ("17 times 23 plus 4" -> "17*23+4",
"15% of 240" -> "(15/100)*240", "square root of 16" -> "sqrt(16)"); ``_expr.evaluate``
computes it with exact fractions (floats only for roots, logs and trigonometry).
"""

from __future__ import annotations

import re
from fractions import Fraction

from llmos.tools.builtin._common import params, string
from llmos.tools.builtin._expr import EXACT_FUNCS, EXACT_NAMES, evaluate, exact_number
from llmos.tools.registry import Tool, ToolContext, ToolResult
from llmos.types import Risk

_NUM = r"\d+(?:\.\d+)?"
_WORDS = [  # (pattern, replacement), applied in order on lower-cased text
    (r"\bsquare root of\b", " sqrt "), (r"\bsqrt of\b", " sqrt "),
    (r"\bto the power of\b", "**"), (r"\braised to\b", "**"), (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"), (r"\bmultiplied by\b", "*"), (r"\btimes\b", "*"),
    (r"\bdivided by\b", "/"), (r"\bover\b", "/"), (r"\bplus\b", "+"), (r"\bminus\b", "-"),
    (r"\bmodulo\b", "%"), (r"\bmod\b", "%"), (r"\band\b", "+"),
]
_LEAD = re.compile(r"^\s*(?:what(?:'s| is)|how much is|calculate|compute|evaluate|solve)\s+", re.I)


def normalize(text: str) -> str:
    """Everyday arithmetic phrasing -> a Python-syntax expression (numbers and operators)."""
    s = _LEAD.sub("", text.strip()).strip().rstrip("?.!= ").lower()
    s = s.replace("×", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)                      # 1,000 -> 1000
    s = re.sub(r"\$\s*(?=\d)", "", s)                                # $20 -> 20
    s = re.sub(rf"({_NUM})\s*(?:%|percent|per cent)\s+of\s+", r"(\1/100)*", s)
    s = re.sub(rf"({_NUM})\s*(?:%|percent|per cent)", r"(\1/100)", s)
    for pat, rep in _WORDS:
        s = re.sub(pat, rep, s)
    s = re.sub(rf"(?<=\d)\s*x\s*(?={_NUM})", "*", s)                 # 3 x 4 -> 3*4
    s = re.sub(r"\bsqrt\s+(" + _NUM + r")", r"sqrt(\1)", s)          # sqrt 16 -> sqrt(16)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\bthe\b|\bof\b", "", s).strip()
    return s


def _fmt(v: Fraction | float) -> tuple[int | float, str | None, str]:
    """(JSON value, exact fraction text or None, text for people)."""
    if isinstance(v, Fraction):
        if v.denominator == 1:
            return int(v), None, str(int(v))
        f = float(v)
        return f, f"{v.numerator}/{v.denominator}", f"{f:.12g}"
    return float(v), None, f"{float(v):.12g}"


def calc_eval(ctx: ToolContext, a: dict) -> ToolResult:
    expr = normalize(a["expression"])
    value = evaluate(expr, names=EXACT_NAMES, funcs=EXACT_FUNCS, number=exact_number)
    if isinstance(value, int):
        value = Fraction(value)
    js, exact, shown = _fmt(value)
    out = {"expression": expr, "value": js, "text": shown}
    if exact:
        out["exact"] = exact
    return ToolResult(out, f"{expr} = {shown}" + (f" (exactly {exact})" if exact else ""))


TOOLS = [
    Tool(name="calc.eval", returns="{expression, value, text}", kind="calc", risk=Risk.READ, fn=calc_eval,
         description="Compute an arithmetic expression exactly, like 17*23+4, 15% of 240 or sqrt(2).",
         parameters=params(["expression"],
                           expression=string("the calculation, with numbers and + - * / ** % ( )", 500,
                                             min_length=1))),
]
