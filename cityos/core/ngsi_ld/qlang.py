"""The NGSI-LD query language of the ``q`` parameter (ETSI GS CIM 009, clause 4.9).

``parse_q`` turns the text into a small immutable tree (:class:`Term`, :class:`And`,
:class:`Or`); ``q_matches`` evaluates the tree on an entity in CityOS's canonical
normalised form (:mod:`cityos.core.entities`).

Grammar (``;`` is AND and binds tighter than ``|``, OR)::

    expr    := and ('|' and)*
    and     := unary (';' unary)*
    unary   := '(' expr ')' | '!' path | path [op values]
    path    := name ('.' name)* ('[' name ('.' name)* ']')*
    op      := '==' | '!=' | '<' | '<=' | '>' | '>=' | '~=' | '!~='
    values  := value (',' value)* | value '..' value        (== and != only)
    value   := number | "quoted string" | true | false | date-time | date | time | URI

``a.b`` is the sub-attribute ``b`` of attribute ``a`` (or one of its members such as
``observedAt``, ``unitCode`` or ``datasetId``); ``a[b.c]`` (also ``a[b][c]``) walks into
a compound (JSON object) value. A pattern after ``~=`` is a Python regular expression,
matched with ``re.search``; quote it when it holds ``;``, ``|`` or parentheses.

Evaluation, the choices made where the specification leaves room:

* a missing attribute (or path) fails every term except ``!attr``;
* a term holds when ANY instance of a multi-instance attribute satisfies it, and, for
  an array value, ``==``, ordering and ``~=`` hold when ANY element does;
* ``!=`` and ``!~=`` are the negation of ``==`` and ``~=`` on a value that exists, so a
  value of another type counts as unequal (as Orion-LD does);
* values of different types never compare (``5 < "6"`` is false, no error); strings
  that are both date-times (or both times of day) compare chronologically, and a
  date-time never compares with other text;
* a Relationship compares its ``object``, a LanguageProperty the strings of its
  ``languageMap`` (``name[en]`` picks one language).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, Union

from cityos.core.entities import ATTRIBUTE_MEMBERS, RESERVED_KEYS
from cityos.core.errors import BadRequestData
from cityos.core.timefmt import parse_datetime

__all__ = ["MAX_DEPTH", "And", "AttrPath", "Or", "QExpr", "QValue", "Term", "iter_terms",
           "parse_q", "q_attribute_names", "q_matches", "rename_attributes"]

#: Deepest parenthesis nesting accepted; deeper input is refused as pathological.
MAX_DEPTH = 32

COMPARISON_OPS = ("==", "!=", "<", "<=", ">", ">=")
PATTERN_OPS = ("~=", "!~=")
# Longest first so that '<=' is not read as '<' followed by '='.
_OPS = ("!~=", "~=", "==", "!=", "<=", ">=", "<", ">")

_NAME = re.compile(r"[^\s=!<>~;|()\[\],.\"'\\]+")
_URI_NAME = re.compile(r"[A-Za-z][A-Za-z0-9+\-]*://[^\s=!<>~;|()\[\],\"'\\]+")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_BOOL = re.compile(r"(?:true|false)(?![^\s;|),.])")
# A URI value stops before '..' so that it can bound a range.
_URI_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[^\s;|(),\"'<>\\.]|\.(?!\.))+")
_RAW_PATTERN = re.compile(r"[^;|]+")


# --------------------------------------------------------------------- the tree
@dataclass(frozen=True)
class AttrPath:
    """Where a term looks: attribute ``name``, sub-attributes, then compound keys."""

    name: str
    sub: tuple[str, ...] = ()
    compound: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = ".".join((self.name, *self.sub))
        return text + (f"[{'.'.join(self.compound)}]" if self.compound else "")


@dataclass(frozen=True)
class QValue:
    """One literal of a query: its canonical ``text``, Python ``raw`` value and the
    comparison ``key`` (``(kind, value)`` with kind num, str, bool, time or clock)."""

    text: str
    raw: Any
    key: tuple


@dataclass(frozen=True)
class Term:
    """One test on one attribute path.

    ``op`` is ``exists``, ``!exists``, a comparison or a pattern operator. ``values``
    holds the value list (any of them), or the two bounds when ``is_range``.
    """

    path: AttrPath
    op: str
    values: tuple[QValue, ...] = ()
    is_range: bool = False
    pattern: str | None = None
    regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        if self.op == "exists":
            return str(self.path)
        if self.op == "!exists":
            return f"!{self.path}"
        if self.op in PATTERN_OPS:
            return f"{self.path}{self.op}{_quote(self.pattern)}"
        joiner = ".." if self.is_range else ","
        return f"{self.path}{self.op}{joiner.join(v.text for v in self.values)}"


@dataclass(frozen=True)
class And:
    """All parts hold (``;``)."""

    parts: tuple[QExpr, ...]

    def __str__(self) -> str:
        return ";".join(f"({p})" if isinstance(p, Or) else str(p) for p in self.parts)


@dataclass(frozen=True)
class Or:
    """At least one part holds (``|``)."""

    parts: tuple[QExpr, ...]

    def __str__(self) -> str:
        return "|".join(str(p) for p in self.parts)


QExpr = Union[Term, And, Or]  # noqa: UP007 - a runtime alias, used in isinstance-free code


# ------------------------------------------------------------------- the parser
def parse_q(text: str, max_length: int = 4096) -> QExpr:
    """Parse an NGSI-LD ``q`` expression.

    Parameters
    ----------
    text : str
        For example ``speed>50;(status=="open"|status=="closed")``.
    max_length : int
        Longer expressions are refused before any parsing.

    Returns
    -------
    QExpr
        A :class:`Term`, :class:`And` or :class:`Or`; ``str()`` of it gives back an
        equivalent canonical expression.

    Raises
    ------
    BadRequestData
        With the character position and what was expected there, on bad syntax, an
        invalid date-time or regular expression, nesting deeper than ``MAX_DEPTH``, or
        an expression longer than ``max_length``.
    """
    if not isinstance(text, str):
        raise BadRequestData(f"q: expected a string, got {type(text).__name__}")
    if len(text) > max_length:
        raise BadRequestData(f"q: the expression is {len(text)} characters long; "
                             f"the limit is {max_length}")
    return _Parser(text).parse()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Parser:
    """Recursive descent over the characters; ``pos`` is 0-based, messages 1-based."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0

    # helpers
    def fail(self, expected: str, at: int | None = None) -> None:
        at = self.pos if at is None else at
        found = repr(self.text[at]) if at < len(self.text) else "the end"
        near = self.text[max(0, at - 24):at + 24]
        raise BadRequestData(f"q: expected {expected} at character {at + 1}, found {found} "
                             f"(near {near!r})")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    # grammar
    def parse(self) -> QExpr:
        self.skip_ws()
        if self.pos == len(self.text):
            raise BadRequestData("q: the expression is empty")
        expr = self.parse_or()
        self.skip_ws()
        if self.pos != len(self.text):
            self.fail("';', '|' or the end of the expression")
        return expr

    def parse_or(self) -> QExpr:
        parts = [self.parse_and()]
        self.skip_ws()
        while self.peek() == "|":
            self.pos += 1
            parts.append(self.parse_and())
            self.skip_ws()
        return _flat(Or, parts)

    def parse_and(self) -> QExpr:
        parts = [self.parse_unary()]
        self.skip_ws()
        while self.peek() == ";":
            self.pos += 1
            parts.append(self.parse_unary())
            self.skip_ws()
        return _flat(And, parts)

    def parse_unary(self) -> QExpr:
        self.skip_ws()
        if self.peek() != "(":
            return self.parse_term()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise BadRequestData(f"q: parentheses nested deeper than {MAX_DEPTH} "
                                 f"at character {self.pos + 1}")
        self.pos += 1
        expr = self.parse_or()
        self.skip_ws()
        if self.peek() != ")":
            self.fail("')'")
        self.pos += 1
        self.depth -= 1
        return expr

    def parse_term(self) -> Term:
        negated = self.peek() == "!"
        if negated:
            self.pos += 1
        path = self.parse_path()
        self.skip_ws()
        op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
        if negated:
            if op is not None:
                self.fail("';', '|', ')' or the end ('!attr' tests that an attribute is "
                          "absent and takes no operator)")
            return Term(path, "!exists")
        if op is None:
            if self.peek() == "=":
                self.fail("an operator ('==', not '=')")
            if self.peek() not in ("", ";", "|", ")"):
                self.fail("an operator (==, !=, <, <=, >, >=, ~=, !~=), ';', '|', ')' "
                          "or the end")
            return Term(path, "exists")
        self.pos += len(op)
        self.skip_ws()
        if op in PATTERN_OPS:
            return self.parse_pattern_term(path, op)
        return self.parse_value_term(path, op)

    def parse_path(self) -> AttrPath:
        names = [self.parse_name(allow_uri=True)]
        while self.peek() == ".":
            self.pos += 1
            names.append(self.parse_name())
        compound: list[str] = []
        while self.peek() == "[":
            self.pos += 1
            compound.append(self.parse_name())
            while self.peek() == ".":
                self.pos += 1
                compound.append(self.parse_name())
            if self.peek() != "]":
                self.fail("']' or '.'")
            self.pos += 1
        return AttrPath(names[0], tuple(names[1:]), tuple(compound))

    def parse_name(self, allow_uri: bool = False) -> str:
        match = (allow_uri and _URI_NAME.match(self.text, self.pos)) or \
            _NAME.match(self.text, self.pos)
        if not match:
            self.fail("an attribute name")
        self.pos = match.end()
        return match.group()

    def parse_pattern_term(self, path: AttrPath, op: str) -> Term:
        start = self.pos
        if self.peek() == '"':
            pattern = self.parse_string()
        else:
            match = _RAW_PATTERN.match(self.text, self.pos)
            if not match:
                self.fail("a regular expression")
            pattern = match.group()
            # A raw pattern ends before the ')' closing an enclosing group.
            open_count = 0
            for i, char in enumerate(pattern):
                if char == "(" and (i == 0 or pattern[i - 1] != "\\"):
                    open_count += 1
                elif char == ")" and (i == 0 or pattern[i - 1] != "\\"):
                    if open_count == 0:
                        pattern = pattern[:i]
                        break
                    open_count -= 1
            pattern = pattern.rstrip()
            if not pattern:
                self.fail("a regular expression")
            self.pos += len(pattern)
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise BadRequestData(f"q: the pattern for {path} at character {start + 1} is not "
                                 f"a valid regular expression: {exc}") from None
        self.check_value_end(comma=False)
        return Term(path, op, pattern=pattern, regex=regex)

    def parse_value_term(self, path: AttrPath, op: str) -> Term:
        start = self.pos
        first = self.parse_value()
        if self.next_is(".."):
            if op not in ("==", "!="):
                self.fail(f"';', '|', ')' or the end (a range needs '==' or '!=', not {op!r})")
            self.pos += 2
            self.skip_ws()
            end_at = self.pos
            last = self.parse_value()
            for bound, at in ((first, start), (last, end_at)):
                if bound.key[0] not in ("num", "str", "time", "clock"):
                    self.fail("a number, quoted string, date or time as a range bound", at)
            if first.key[0] != last.key[0]:
                raise BadRequestData(f"q: the range bounds {first.text} and {last.text} at "
                                     f"character {start + 1} are not of one kind")
            self.check_value_end(comma=False)
            return Term(path, op, (first, last), is_range=True)
        values = [first]
        if op in ("==", "!="):
            while self.next_is(","):
                self.pos += 1
                self.skip_ws()
                values.append(self.parse_value())
        elif first.key[0] == "bool" or (isinstance(first.raw, str)
                                         and not first.text.startswith('"')):
            self.fail(f"a number, quoted string, date or time after {op!r} (true, false "
                      f"and URIs only take '==' or '!=')", start)
        self.check_value_end(comma=op in ("==", "!="))
        return Term(path, op, tuple(values))

    def next_is(self, token: str) -> bool:
        """Whether ``token`` follows (after blanks, which are then skipped)."""
        save = self.pos
        self.skip_ws()
        if self.text.startswith(token, self.pos):
            return True
        self.pos = save
        return False

    def check_value_end(self, comma: bool) -> None:
        save = self.pos
        self.skip_ws()
        if self.peek() in ("", ";", "|", ")"):
            self.pos = save
            return
        self.fail("',', ';', '|', ')' or the end after the value" if comma
                  else "';', '|', ')' or the end after the value")

    def parse_string(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text) and text[self.pos + 1] in '"\\':
                out.append(text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
                self.pos += 1
        raise BadRequestData(f"q: the string starting at character {start + 1} is not closed "
                             f"with '\"'")

    def parse_value(self) -> QValue:
        text, at = self.text, self.pos
        if self.peek() == '"':
            raw = self.parse_string()
            return QValue(_quote(raw), raw, _str_key(raw))
        if match := _BOOL.match(text, at):
            self.pos = match.end()
            return QValue(match.group(), match.group() == "true",
                          ("bool", match.group() == "true"))
        if match := _DATETIME.match(text, at):
            self.pos = match.end()
            moment = parse_datetime(match.group(), f"q: the value at character {at + 1}")
            return QValue(match.group(), moment, ("time", moment))
        if match := _DATE.match(text, at):
            self.pos = match.end()
            try:
                day = date.fromisoformat(match.group())
            except ValueError:
                raise BadRequestData(f"q: the value at character {at + 1}: "
                                     f"{match.group()!r} is not a valid date") from None
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return QValue(match.group(), moment, ("time", moment))
        if match := _TIME.match(text, at):
            self.pos = match.end()
            clock = _parse_clock(match.group())
            if clock is None:
                raise BadRequestData(f"q: the value at character {at + 1}: "
                                     f"{match.group()!r} is not a valid time")
            return QValue(match.group(), clock, ("clock", clock))
        if match := _NUMBER.match(text, at):
            self.pos = match.end()
            literal = match.group()
            number = float(literal) if any(c in literal for c in ".eE") else int(literal)
            return QValue(repr(number), number, ("num", number))
        if match := _URI_VALUE.match(text, at):
            self.pos = match.end()
            return QValue(match.group(), match.group(), ("str", match.group()))
        self.fail("a value (number, \"quoted string\", true, false, date-time or URI)")
        raise AssertionError  # fail() always raises


def _flat(kind: type, parts: list) -> QExpr:
    """One part stays itself; nested parts of the same kind are spliced in."""
    if len(parts) == 1:
        return parts[0]
    flat: list = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, kind) else (part,))
    return kind(tuple(flat))


# --------------------------------------------------------------- comparison keys
@lru_cache(maxsize=65536)
def _str_key(text: str) -> tuple:
    """Comparison key of a string: a date-time, a time of day, or the string itself."""
    if len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-" and text[:4].isdigit():
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return ("str", text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return ("time", moment.astimezone(UTC))
    if 5 <= len(text) <= 21 and text[2:3] == ":" and _TIME.fullmatch(text):
        clock = _parse_clock(text)
        if clock is not None:
            return ("clock", clock)
    return ("str", text)


def _parse_clock(text: str) -> time | None:
    try:
        clock = time.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if clock.tzinfo is not None:  # compare times of day in UTC, naive
        moment = datetime.combine(date(2000, 1, 3), clock).astimezone(UTC)
        clock = moment.time()
    return clock


def _key(value: Any) -> tuple | None:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", value)
    if isinstance(value, str):
        return _str_key(value)
    if isinstance(value, dict) and "@value" in value:  # typed literal, e.g. DateTime
        return _key(value["@value"])
    return None


def _pair(value: Any, query: QValue) -> tuple[Any, Any] | None:
    """The two comparable sides, or None when the types differ."""
    key = _key(value)
    if key is None:
        return None
    if key[0] == query.key[0]:
        return key[1], query.key[1]
    return None


# ------------------------------------------------------------------- evaluation
def q_matches(expr: QExpr, entity: dict) -> bool:
    """True when the entity satisfies the parsed ``q`` expression.

    Parameters
    ----------
    expr : QExpr
        From :func:`parse_q`.
    entity : dict
        An entity in canonical normalised form.
    """
    if isinstance(expr, Term):
        return _term_holds(expr, entity)
    if isinstance(expr, And):
        return all(q_matches(part, entity) for part in expr.parts)
    return any(q_matches(part, entity) for part in expr.parts)


def _term_holds(term: Term, entity: dict) -> bool:
    targets = _targets(term.path, entity)
    op = term.op
    if op == "exists":
        return bool(targets)
    if op == "!exists":
        return not targets
    if op == "==":
        return any(_equals(term, t) for t in targets)
    if op == "!=":
        return any(not _equals(term, t) for t in targets)
    if op == "~=":
        return any(_searches(term, t) for t in targets)
    if op == "!~=":
        return any(not _searches(term, t) for t in targets)
    if _relationship(term.path, entity):
        return False  # clause 4.9: ordering a Relationship never matches
    query = term.values[0]
    for target in targets:
        for item in (target if isinstance(target, list) else (target,)):
            pair = _pair(item, query)
            if pair is not None and _ORDER[op](*pair):
                return True
    return False


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _equals(term: Term, target: Any) -> bool:
    for item in (target if isinstance(target, list) else (target,)):
        if term.is_range:
            low, high = _pair(item, term.values[0]), _pair(item, term.values[1])
            if low is not None and high is not None and \
                    (low[0] >= low[1]) and (high[0] <= high[1]):
                return True
            continue
        for query in term.values:
            pair = _pair(item, query)
            if pair is not None and pair[0] == pair[1]:
                return True
    return False


def _relationship(path: AttrPath, entity: dict) -> bool:
    attr = entity.get(path.name)
    if path.sub or attr is None:
        return False
    return any(isinstance(i, dict) and i.get("type") in ("Relationship", "ListRelationship")
               for i in (attr if isinstance(attr, list) else (attr,)))


def _searches(term: Term, target: Any) -> bool:
    return any(isinstance(item, str) and term.regex.search(item) is not None
               for item in (target if isinstance(target, list) else (target,)))


def _targets(path: AttrPath, entity: dict) -> list:
    """The values the path reaches, one per attribute instance (lists kept whole)."""
    if path.name in RESERVED_KEYS:
        return []
    attr = entity.get(path.name)
    if attr is None:
        return []
    nodes = [i for i in (attr if isinstance(attr, list) else (attr,)) if isinstance(i, dict)]
    for depth, step in enumerate(path.sub):
        if step in ATTRIBUTE_MEMBERS:
            if depth != len(path.sub) - 1:
                return []  # nothing lies below a member such as observedAt
            return _walk([n[step] for n in nodes if step in n], path.compound)
        below: list[dict] = []
        for node in nodes:
            sub = node.get(step)
            if sub is not None:
                below.extend(s for s in (sub if isinstance(sub, list) else (sub,))
                             if isinstance(s, dict))
        nodes = below
    values: list = []
    any_language: list = []
    for node in nodes:
        kind = node.get("type")
        if kind == "Relationship":
            if "object" in node:
                values.append(node["object"])
        elif kind == "LanguageProperty":
            language_map = node.get("languageMap")
            if isinstance(language_map, dict):
                if path.compound[:1] == ("*",):  # name[*]: any language
                    any_language.append(_strings(language_map))
                    continue
                values.append(language_map if path.compound else _strings(language_map))
        elif kind == "ListRelationship":
            values.append([o.get("object") if isinstance(o, dict) else o
                           for o in node.get("objectList") or []])
        elif kind in _VALUE_OF:
            if _VALUE_OF[kind] in node:
                values.append(node[_VALUE_OF[kind]])
        elif "value" in node:
            values.append(node["value"])
    return _walk(values, path.compound) + any_language


_VALUE_OF = {"JsonProperty": "json", "VocabProperty": "vocab", "ListProperty": "valueList"}


def _strings(language_map: dict) -> list:
    out: list = []
    for text in language_map.values():
        out.extend(text if isinstance(text, list) else (text,))
    return out


def _walk(values: list, keys: tuple[str, ...]) -> list:
    """Follow compound keys into JSON object values (through arrays of objects)."""
    for key in keys:
        below: list = []
        for value in values:
            if isinstance(value, dict):
                if key in value:
                    below.append(value[key])
            elif isinstance(value, list):
                below.extend(v[key] for v in value if isinstance(v, dict) and key in v)
        values = below
    return values


# ------------------------------------------------------------------- inspection
def iter_terms(expr: QExpr) -> Iterator[Term]:
    """Every :class:`Term` of the expression, left to right."""
    if isinstance(expr, Term):
        yield expr
    else:
        for part in expr.parts:
            yield from iter_terms(part)


def q_attribute_names(expr: QExpr) -> set[str]:
    """The top-level attribute names the expression refers to."""
    return {term.path.name for term in iter_terms(expr)}


def rename_attributes(expr: QExpr, rename: Callable[[str], str]) -> QExpr:
    """A copy of the expression with each top-level attribute name passed through
    ``rename`` (the API uses it to expand or compact names against an @context)."""
    if isinstance(expr, Term):
        return replace(expr, path=replace(expr.path, name=rename(expr.path.name)))
    return type(expr)(tuple(rename_attributes(p, rename) for p in expr.parts))
