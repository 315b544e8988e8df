"""Expressions over a table's columns (a filter's condition, a derived column), checked, then evaluated.

A config's expression is never given to Python's ``eval``. ``check_expression`` parses it with ``ast``
and accepts only column names, number, text and true/false literals, arithmetic, comparisons and
boolean operators; it refuses calls, attribute access, subscripts, lambdas, ``@`` variables and
everything else, naming the construct. ``evaluate`` checks again (whatever built the expression),
checks every name against the table's columns, and only then hands the text to pandas'
``DataFrame.eval`` with no variables in scope: engine ``numexpr`` when it is installed, else ``python``.

A column whose name is not a Python identifier (``blood pressure``) is written between backticks, as
pandas reads it: ```blood pressure` > 90``.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from typing import TYPE_CHECKING, Any

from trainyard.errors import ConfigurationError, DataValidationError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

MAX_LENGTH = 2_000
MAX_EXPONENT = 100
_QUOTED = "_trainyard_quoted_"  # the placeholder a backtick-quoted name stands as while parsing

_ARITHMETIC: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}
_UNARY = (ast.UAdd, ast.USub, ast.Not, ast.Invert)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_ALLOWED = (
    "an expression may use column names, numbers, text in quotes, True/False, arithmetic "
    "(+ - * / // % **), comparisons (== != < <= > >= in, not in) and boolean operators "
    "(and or not & | ~)"
)
_LISTS = "is a list: a list (or tuple) is allowed only after in, not in, == or !=, and only of literals"
_ASSIGNMENT = re.compile(r"(?<![=<>!])=(?!=)")
_REFUSED: dict[type[ast.AST], str] = {
    ast.Call: "calls a function, and functions are not allowed",
    ast.Attribute: "reads an attribute, and attribute access is not allowed",
    ast.Subscript: "takes a subscript, and subscripts are not allowed",
    ast.Lambda: "is a lambda, and lambdas are not allowed",
    ast.NamedExpr: "assigns a name (:=), and assignments are not allowed",
    ast.IfExp: "is a conditional expression (x if c else y), which is not allowed",
    ast.Starred: "unpacks (*x), which is not allowed",
    ast.Dict: "is a dict, which is not allowed",
    ast.Set: "is a set, which is not allowed",
    ast.JoinedStr: "is an f-string, which is not allowed",
    ast.ListComp: "is a comprehension, which is not allowed",
    ast.SetComp: "is a comprehension, which is not allowed",
    ast.DictComp: "is a comprehension, which is not allowed",
    ast.GeneratorExp: "is a generator, which is not allowed",
    ast.Await: "awaits, which is not allowed",
    ast.Yield: "yields, which is not allowed",
    ast.YieldFrom: "yields, which is not allowed",
    ast.Slice: "takes a slice, and subscripts are not allowed",
}


class ExpressionError(ValueError):
    """An expression that is not valid, or uses a construct that is not allowed (the reason)."""


def check_expression(expression: str) -> frozenset[str]:
    """The column names ``expression`` uses; raises ExpressionError saying what is not allowed.

    Checks the text alone (no table needed), so a config is checked when it is validated.
    """
    if not expression.strip():
        raise ExpressionError("the expression is empty")
    if len(expression) > MAX_LENGTH:
        raise ExpressionError(f"the expression has {len(expression)} characters, at most {MAX_LENGTH}")
    text, quoted = _substitute_backticks(expression)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        where = f" at character {error.offset}" if error.offset else ""
        hint = " (= assigns: compare with ==)" if _ASSIGNMENT.search(text) else ""
        raise ExpressionError(f"not a valid expression{where}: {error.msg}{hint}") from None
    lists = {
        id(comparator)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        for comparator in node.comparators
        if isinstance(comparator, ast.List | ast.Tuple)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(quoted.get(node.id, node.id))
        elif isinstance(node, ast.List | ast.Tuple):
            if id(node) not in lists or not all(_is_literal(item) for item in node.elts):
                raise _refused(node, text, quoted, _LISTS)
        elif isinstance(node, ast.BinOp):
            _check_arithmetic(node, text, quoted)
        elif not _allowed_node(node):
            raise _refused(node, text, quoted, _reason(node))
    return frozenset(names)


def check_columns(expression: str, columns: list[str]) -> None:
    """Every name in ``expression`` is one of ``columns``; raises ConfigurationError naming the others."""
    try:
        used = check_expression(expression)
    except ExpressionError as error:
        raise ConfigurationError(f"{expression!r}: {error}") from None
    unknown = sorted(name for name in used if name not in columns)
    if unknown:
        raise ConfigurationError(f"in {expression!r}: {unknown_columns(unknown, columns)}")


def evaluate(data: pd.DataFrame, expression: str) -> Any:
    """The value of ``expression`` on ``data`` (a Series, or a scalar when it names no column).

    Checked first (``check_columns``); a failure of pandas (text compared with numbers, say) is a
    DataValidationError naming the expression.
    """
    check_columns(expression, [str(column) for column in data.columns])
    try:
        return data.eval(expression.strip(), engine=engine(), local_dict={}, global_dict={})
    except Exception as error:  # pandas raises TypeError, ValueError, its own errors
        raise DataValidationError(
            f"{expression!r} cannot be computed on this table: {type(error).__name__}: {error}"
        ) from error


def engine() -> str:
    """The pandas engine that computes expressions: numexpr when installed, else python."""
    return "numexpr" if importlib.util.find_spec("numexpr") is not None else "python"


def unknown_columns(unknown: list[str], columns: list[str]) -> str:
    """``unknown column 'agee'. Did you mean age? The columns here: age, sex``."""
    named = ", ".join(repr(name) for name in unknown)
    hints = "".join(did_you_mean(name, columns) for name in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown column{plural} {named}.{hints} The columns here: {', '.join(columns)}"


def _substitute_backticks(expression: str) -> tuple[str, dict[str, str]]:
    """``expression`` with each backtick-quoted name replaced by a placeholder identifier, and the
    names by placeholder; refuses ``@`` (pandas' local variables) outside text literals."""
    out: list[str] = []
    quoted: dict[str, str] = {}
    quote: str | None = None
    index = 0
    while index < len(expression):
        char = expression[index]
        if quote is not None:
            out.append(char)
            if char == "\\":
                out.append(expression[index + 1 : index + 2])
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "`":
            end = expression.find("`", index + 1)
            if end < 0:
                raise ExpressionError(f"the backtick at character {index + 1} is not closed")
            placeholder = f"{_QUOTED}{len(quoted)}"
            quoted[placeholder] = expression[index + 1 : end]
            out.append(placeholder)
            index = end
        elif char == "@":
            raise ExpressionError(
                f"'@' at character {index + 1}: variables (@name) and the @ operator are not allowed; "
                "an expression names columns only"
            )
        else:
            out.append(char)
        index += 1
    return "".join(out), quoted


def _allowed_node(node: ast.AST) -> bool:
    if isinstance(node, ast.Expression | ast.Load | ast.Name | ast.BoolOp | ast.And | ast.Or):
        return True
    if isinstance(node, ast.UnaryOp | ast.unaryop):
        return isinstance(node.op if isinstance(node, ast.UnaryOp) else node, _UNARY)
    if isinstance(node, ast.Compare):
        return all(isinstance(op, _COMPARISONS) for op in node.ops)
    if isinstance(node, ast.cmpop):
        return isinstance(node, _COMPARISONS)
    if isinstance(node, ast.operator):
        return type(node) in _ARITHMETIC
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float, str, bool)
    return False


def _reason(node: ast.AST) -> str:
    """Why ``node`` is refused."""
    if isinstance(node, ast.Constant):
        return "is not a number, text in quotes or True/False"
    if isinstance(node, ast.Compare):
        return "compares with is / is not, which is not allowed: use == or !="
    return _REFUSED.get(type(node), f"({type(node).__name__}) is not allowed: {_ALLOWED}")


def _check_arithmetic(node: ast.BinOp, text: str, quoted: dict[str, str]) -> None:
    """Arithmetic that cannot exhaust memory or time: no text repeated or formatted, and a power of
    constants only of two literal numbers with a small exponent (``9**9**9`` is refused)."""
    if type(node.op) not in _ARITHMETIC:
        raise _refused(node, text, quoted, f"uses an operator that is not allowed: {_ALLOWED}")
    if _is_text(node.left) or _is_text(node.right):
        raise _refused(node, text, quoted, "computes with text, which can only be compared (==, !=, in)")
    if isinstance(node.op, ast.Pow) and not (_has_name(node.left) or _has_name(node.right)):
        exponent = _number(node.right)
        if _number(node.left) is None or exponent is None or abs(exponent) > MAX_EXPONENT:
            raise _refused(
                node,
                text,
                quoted,
                f"raises a constant to a power: write the number (at most ** {MAX_EXPONENT})",
            )


def _is_literal(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and type(node.value) in (int, float, str, bool)) or (
        _number(node) is not None
    )


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _number(node: ast.AST) -> float | None:
    """The value of a number literal (``3``, ``-2.5``), else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(sign * node.value)
    return None


def _has_name(node: ast.AST) -> bool:
    return any(isinstance(child, ast.Name) for child in ast.walk(node))


def _refused(node: ast.AST, text: str, quoted: dict[str, str], reason: str) -> ExpressionError:
    """``'a.__class__' reads an attribute, ...``: the construct as written, and why it is refused."""
    segment = ast.get_source_segment(text.strip(), node) or ast.unparse(node)
    if segment == text.strip():
        return ExpressionError(f"the expression {reason}")
    for placeholder, name in sorted(quoted.items(), key=lambda item: -len(item[0])):
        segment = segment.replace(placeholder, f"`{name}`")
    return ExpressionError(f"{segment!r} {reason}")
