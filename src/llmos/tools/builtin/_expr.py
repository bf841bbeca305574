"""A small arithmetic evaluator over Python's AST: never ``eval``.

``evaluate(text, names=..., funcs=..., number=...)`` accepts numbers, names (looked up
in ``names``), ``+ - * / // % **``, unary ``+ -`` and calls of the functions in
``funcs``. Everything else (attributes, subscripts, lambdas, comprehensions, strings)
is refused with InvalidArgument. Sizes are bounded so ``9**9**9`` cannot eat the CPU.
``calc.eval`` uses it with exact fractions; ``data.compute`` with table columns.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from llmos.errors import InvalidArgument

EXPR_MAX_CHARS = 500
EXPR_MAX_NODES = 300
POW_MAX_BITS = 100_000      # largest integer a power may produce (about 30 000 digits)

_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UN: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _bits(x: Any) -> int:
    if isinstance(x, Fraction):
        return max(abs(x.numerator).bit_length(), x.denominator.bit_length())
    if isinstance(x, int):
        return abs(x).bit_length()
    return 64


def _pow(a: Any, b: Any, field: str) -> Any:
    if isinstance(b, (int, Fraction)) and not isinstance(a, float) and _bits(a) > 1:
        if isinstance(b, Fraction) and b.denominator == 1:
            b = int(b)
        if isinstance(b, int) and _bits(a) * abs(b) > POW_MAX_BITS:
            raise InvalidArgument(f"{field}: the power is too large to compute exactly", field=field,
                                  expected=f"a result under {POW_MAX_BITS} bits")
    r = a ** b
    if isinstance(r, complex):
        raise InvalidArgument(f"{field}: the result is not a real number", field=field,
                              expected="a real result (no even roots of negatives)")
    return r


def evaluate(text: str, *, names: Mapping[str, Any] | None = None,
             funcs: Mapping[str, Callable[..., Any]] | None = None,
             number: Callable[[int | float], Any] = lambda v: v, field: str = "expression") -> Any:
    """Evaluate ``text``; numbers become ``number(v)``; names and calls come from the maps."""
    names = names or {}
    funcs = funcs or {}
    if not text.strip():
        raise InvalidArgument(f"{field}: expected an arithmetic expression", field=field,
                              expected="an expression like 17*23+4")
    if len(text) > EXPR_MAX_CHARS:
        raise InvalidArgument(f"{field}: longer than {EXPR_MAX_CHARS} characters", field=field,
                              expected=f"at most {EXPR_MAX_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise InvalidArgument(f"{field}: cannot read {text.strip()!r} as arithmetic ({exc.msg})",
                              field=field, expected="numbers with + - * / ** ( ) and functions") from None
    if sum(1 for _ in ast.walk(tree)) > EXPR_MAX_NODES:
        raise InvalidArgument(f"{field}: the expression is too long", field=field,
                              expected=f"at most {EXPR_MAX_NODES} parts")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return number(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                return _pow(left, right, field)
            try:
                return _BIN[type(node.op)](left, right)
            except ZeroDivisionError:
                raise InvalidArgument(f"{field}: division by zero", field=field,
                                      expected="a non-zero divisor") from None
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UN:
            return _UN[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Name):
            if node.id in names:
                return names[node.id]
            known = ", ".join(sorted(names)) or "none"
            raise InvalidArgument(f"{field}: unknown name {node.id!r} (known: {known})", field=field,
                                  expected=f"numbers or one of: {known}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            fn = funcs.get(node.func.id)
            if fn is None:
                raise InvalidArgument(f"{field}: unknown function {node.func.id!r}", field=field,
                                      expected="one of: " + ", ".join(sorted(funcs)))
            try:
                return fn(*[ev(a) for a in node.args])
            except (ValueError, TypeError, OverflowError) as exc:
                raise InvalidArgument(f"{field}: {node.func.id}: {exc}", field=field,
                                      expected=f"valid arguments for {node.func.id}") from None
        raise InvalidArgument(f"{field}: {type(node).__name__} is not arithmetic", field=field,
                              expected="numbers with + - * / ** ( ) and functions")

    try:
        return ev(tree)
    except OverflowError:
        raise InvalidArgument(f"{field}: the number is too large", field=field,
                              expected="a result that fits a float") from None


# ── exact-first math functions for calc ─────────────────────────────────────
def _sqrt(x: Any) -> Any:
    if x < 0:
        raise ValueError("square root of a negative number")
    if isinstance(x, Fraction):
        n, d = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if n * n == x.numerator and d * d == x.denominator:
            return Fraction(n, d)
    return math.sqrt(x)


def _round(x: Any, nd: Any = 0) -> Any:
    nd = int(nd)
    return round(Fraction(x), nd) if nd else Fraction(round(Fraction(x)))


EXACT_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": _sqrt, "abs": abs, "round": _round, "min": min, "max": max,
    "floor": lambda x: Fraction(math.floor(x)), "ceil": lambda x: Fraction(math.ceil(x)),
    "log": lambda x, b=None: math.log(x) if b is None else math.log(x, b),
    "log10": math.log10, "ln": math.log, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan,
}
EXACT_NAMES: dict[str, Any] = {"pi": math.pi, "e": math.e}


def exact_number(v: int | float) -> Fraction:
    """Literals as exact fractions: 0.1 is 1/10, not the nearest binary float."""
    return Fraction(str(v)) if isinstance(v, float) else Fraction(v)
