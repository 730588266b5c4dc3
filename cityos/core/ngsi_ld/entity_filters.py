"""Entity type selection (clause 4.17) and scope queries (``scopeQ``, clause 4.19).

Both are boolean expressions over plain items: ``,`` and ``|`` are OR, ``;`` is AND and
binds tighter, parentheses group. A type expression tests the entity's types (``*``
alone selects every type); a scope query tests its ``scope`` values, where ``+`` stands
for one scope level and a final ``#`` for any number of levels (``/#`` is any scope).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cityos.core.entities import entity_types
from cityos.core.errors import BadRequestData

#: A parsed expression: ("item", text) | ("and", [parts]) | ("or", [parts]).
Expr = tuple


def parse_boolean(text: str, field: str, item: re.Pattern) -> Expr:
    """Parse ``a;b,(c|d)`` into a tree whose leaves match ``item``.

    Raises
    ------
    BadRequestData
        Naming ``field`` and the position of the first error.
    """
    parser = _Parser(text, field, item)
    tree = parser.parse_or()
    if parser.at != len(text):
        parser.fail()
    return tree


class _Parser:
    def __init__(self, text: str, field: str, item: re.Pattern):
        self.text, self.field, self.item, self.at = text, field, item, 0

    def fail(self) -> None:
        found = repr(self.text[self.at]) if self.at < len(self.text) else "the end"
        raise BadRequestData(f"{self.field}: unexpected {found} at position {self.at} "
                             f"in {self.text!r}")

    def parse_or(self) -> Expr:
        parts = [self.parse_and()]
        while self.at < len(self.text) and self.text[self.at] in ",|":
            self.at += 1
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def parse_and(self) -> Expr:
        parts = [self.parse_unary()]
        while self.at < len(self.text) and self.text[self.at] == ";":
            self.at += 1
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def parse_unary(self) -> Expr:
        if self.at < len(self.text) and self.text[self.at] == "(":
            self.at += 1
            tree = self.parse_or()
            if self.at >= len(self.text) or self.text[self.at] != ")":
                self.fail()
            self.at += 1
            return tree
        match = self.item.match(self.text, self.at)
        if not match or not match.group():
            self.fail()
        self.at = match.end()
        return ("item", match.group())


def leaves(tree: Expr) -> list[str]:
    """The items of an expression, in order."""
    if tree[0] == "item":
        return [tree[1]]
    return [leaf for part in tree[1] for leaf in leaves(part)]


def evaluate(tree: Expr, holds: Callable[[str], bool]) -> bool:
    """The truth of an expression, ``holds(item)`` deciding each leaf."""
    kind, value = tree
    if kind == "item":
        return holds(value)
    if kind == "and":
        return all(evaluate(part, holds) for part in value)
    return any(evaluate(part, holds) for part in value)


def rename(tree: Expr, name: Callable[[str], str]) -> Expr:
    """The expression with each item renamed."""
    if tree[0] == "item":
        return ("item", name(tree[1]))
    return (tree[0], [rename(part, name) for part in tree[1]])


def to_text(tree: Expr) -> str:
    """The expression written back (``,`` for OR, ``;`` for AND, parentheses where an
    OR sits inside an AND)."""
    kind, value = tree
    if kind == "item":
        return value
    if kind == "and":
        return ";".join(f"({to_text(p)})" if p[0] == "or" else to_text(p) for p in value)
    return ",".join(to_text(p) for p in value)


# ------------------------------------------------------------------------ types
_TYPE_ITEM = re.compile(r"[^\s,;|()]+")


@dataclass(frozen=True)
class TypeSelection:
    """A parsed ``type``: ``candidates`` (any of them; None for every type) for the
    store's index, and ``tree`` when the expression needs more than OR."""

    candidates: list[str] | None
    tree: Expr | None = None

    def matches(self, entity: dict) -> bool:
        """True when the entity's types satisfy the expression."""
        if self.tree is None:
            return True
        types = set(entity_types(entity))
        return evaluate(self.tree, types.__contains__)


def parse_types(text: str | None, to_canonical: Callable[[str], str],
                field: str = "type") -> TypeSelection | None:
    """Parse a ``type`` parameter into stored type names; None when absent.

    Raises
    ------
    BadRequestData
        For a malformed expression or an empty name.
    """
    if text is None:
        return None
    if text.strip() == "*":
        return TypeSelection(None)
    tree = rename(parse_boolean(text, field, _TYPE_ITEM), to_canonical)
    names = list(dict.fromkeys(leaves(tree)))
    if "*" in names:
        raise BadRequestData(f"{field}: '*' selects every type and stands alone")
    only_or = tree[0] == "item" or (tree[0] == "or" and all(p[0] == "item" for p in tree[1]))
    return TypeSelection(names, None if only_or else tree)


def is_type_expression(text: str) -> bool:
    """True when ``text`` is more than one type name (it has ``,;|()``)."""
    return any(c in text for c in ",;|()")


def rename_type_expression(text: str, name: Callable[[str], str],
                           field: str = "type") -> str:
    """A type name or expression with each type renamed, written back as text.

    Raises
    ------
    BadRequestData
        For a malformed expression, naming ``field``.
    """
    if not is_type_expression(text):
        return name(text)
    return to_text(rename(parse_boolean(text, field, _TYPE_ITEM), name))


def types_match(text: str, types: list[str]) -> bool:
    """True when an entity with ``types`` satisfies the type name or expression."""
    if not is_type_expression(text):
        return text in types
    return evaluate(parse_boolean(text, "type", _TYPE_ITEM), set(types).__contains__)


# ----------------------------------------------------------------------- scopes
_SCOPE_ITEM = re.compile(r"/[^\s,;|()]*")
_SCOPE_LEVEL = re.compile(r"[^/\s,;|()#+]+")


def parse_scope_query(text: str | None, field: str = "scopeQ") -> Expr | None:
    """Parse ``scopeQ``; None when absent.

    Raises
    ------
    BadRequestData
        For a scope that does not start with ``/``, an empty level, or a ``#`` that is
        not the last level.
    """
    if text is None:
        return None
    tree = parse_boolean(text, field, _SCOPE_ITEM)
    for scope in leaves(tree):
        levels = scope.split("/")[1:]
        for index, level in enumerate(levels):
            if level == "#" and index == len(levels) - 1:
                continue
            if level != "+" and not _SCOPE_LEVEL.fullmatch(level):
                raise BadRequestData(f"{field}: {scope!r} is not a scope (/level/level, "
                                     "'+' one level, a final '#' any levels)")
    return tree


def _scope_matches(pattern: str, scope: str) -> bool:
    wanted = pattern.split("/")[1:]
    levels = scope.split("/")[1:] if isinstance(scope, str) else []
    for index, level in enumerate(wanted):
        if level == "#":
            return len(levels) >= max(index, 1)
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(levels) == len(wanted)


def scope_matches(tree: Expr, entity: dict) -> bool:
    """True when the entity's ``scope`` satisfies the scope query."""
    scopes = entity.get("scope")
    if scopes is None:
        return False
    values = scopes if isinstance(scopes, list) else [scopes]
    return evaluate(tree, lambda pattern: any(_scope_matches(pattern, s) for s in values))
