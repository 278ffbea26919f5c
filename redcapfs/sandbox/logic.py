"""A small evaluator for REDCap's ``filterLogic``: enough for the filters clients actually send.

Supported: ``[field]``, ``[event][field]``, ``[checkbox(code)]``, numbers, quoted
strings, ``= <> != < > <= >=``, ``and``/``or`` (any case), ``not``, parentheses.
A comparison is numeric when both sides are numbers, textual otherwise, and an
empty value is only equal to ``""`` (REDCap's rule: blank is not 0). Anything
else is a 400 with REDCap's message (see ``api.messages.BAD_LOGIC``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(?P<var>(?:\[[A-Za-z0-9_]+\])?\[[A-Za-z0-9_]+(?:\([A-Za-z0-9_]+\))?\])"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*'|\"[^\"]*\")"
    r"|(?P<op><>|!=|<=|>=|=|<|>)|(?P<paren>[()])|(?P<word>[A-Za-z]+))"
)

Lookup = Callable[[str, str], str]  # (event or "", column) -> value


class LogicError(ValueError):
    """The expression is not one this evaluator understands."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise LogicError(text[pos:pos + 20])
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], lookup: Lookup) -> None:
        self.tokens, self.pos, self.lookup = tokens, 0, lookup

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.pos += 1
        return tok

    def expr(self) -> bool:
        value = self.conj()
        while self.peek()[0] == "word" and self.peek()[1].lower() == "or":
            self.take()
            value = self.conj() or value
        return value

    def conj(self) -> bool:
        value = self.unary()
        while self.peek()[0] == "word" and self.peek()[1].lower() == "and":
            self.take()
            value = self.unary() and value
        return value

    def unary(self) -> bool:
        if self.peek()[0] == "word" and self.peek()[1].lower() == "not":
            self.take()
            return not self.unary()
        if self.peek() == ("paren", "("):
            self.take()
            value = self.expr()
            if self.take() != ("paren", ")"):
                raise LogicError("missing )")
            return value
        left = self.operand()
        kind, op = self.take()
        if kind != "op":
            raise LogicError(op or "end of logic")
        return _compare(left, op, self.operand())

    def operand(self) -> str:
        kind, text = self.take()
        if kind == "num":
            return text
        if kind == "str":
            return text[1:-1]
        if kind == "var":
            parts = re.findall(r"\[([^\]]+)\]", text)
            event, name = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
            box = re.match(r"^(\w+)\((\w+)\)$", name)
            column = f"{box.group(1)}___{box.group(2).lower()}" if box else name
            return self.lookup(event, column)
        raise LogicError(text or "end of logic")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(left: str, op: str, right: str) -> bool:
    a, b = _number(left), _number(right)
    pair: tuple[Any, Any] = (a, b) if a is not None and b is not None else (left, right)
    if op == "=":
        return bool(pair[0] == pair[1])
    if op in ("<>", "!="):
        return bool(pair[0] != pair[1])
    if left == "" or right == "":
        return False
    return {"<": pair[0] < pair[1], ">": pair[0] > pair[1],
            "<=": pair[0] <= pair[1], ">=": pair[0] >= pair[1]}[op]


def evaluate(text: str, lookup: Lookup) -> bool:
    """True when ``text`` holds for the values ``lookup`` gives; ``LogicError`` when it cannot be read."""
    parser = _Parser(_tokens(text), lookup)
    value = parser.expr()
    if parser.pos != len(parser.tokens):
        raise LogicError(parser.peek()[1])
    return value
