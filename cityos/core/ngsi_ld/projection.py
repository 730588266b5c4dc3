"""The ``pick`` and ``omit`` projections of NGSI-LD (clause 4.21).

A projection names entity members (``id``, ``type``, attributes) separated by ``,``
or ``|``; a Relationship may carry a nested projection in braces for the entity it
links to (``locatedAt{name,isInCountry{description}}``), which only means something
with linked-entity retrieval (``join``). :func:`parse_projection` reads the text into a
tree (member name -> nested tree or None); :func:`project` applies one level of it to a
rendered entity.
"""

from __future__ import annotations

import re
from typing import Any

from cityos.core.errors import BadRequestData

#: A tree of a projection: member name -> the nested projection (or None).
Projection = dict[str, "Projection | None"]

_MEMBER = re.compile(r"[^\s<>\"'=;()\[\]{}|,!&?]+")
_CORE_MEMBERS = ("id", "type")


def parse_projection(text: str | list | None, field: str) -> Projection | None:
    """Parse a ``pick`` or ``omit`` value (text, or a list of member names in a body).

    Raises
    ------
    BadRequestData
        Naming ``field`` and the position: an empty member (``a,,b``, ``a{,b}``,
        ``a{}``), an invalid character, an unclosed or doubled brace.
    """
    if text is None:
        return None
    if isinstance(text, list):
        if not text or not all(isinstance(t, str) and t for t in text):
            raise BadRequestData(f"{field}: must be a non-empty list of member names")
        text = ",".join(text)
    if not isinstance(text, str):
        raise BadRequestData(f"{field}: must be a string")
    tree, end = _parse_list(text, 0, field, depth=0)
    if end != len(text):
        raise BadRequestData(f"{field}: unexpected {text[end]!r} at position {end} "
                             f"in {text!r}")
    return tree


def _parse_list(text: str, at: int, field: str, depth: int) -> tuple[Projection, int]:
    tree: Projection = {}
    while True:
        match = _MEMBER.match(text, at)
        if not match:
            where = f"position {at}" if at < len(text) else "the end"
            found = repr(text[at]) if at < len(text) else "nothing"
            raise BadRequestData(f"{field}: a member name is expected at {where} of "
                                 f"{text!r}, found {found}")
        name = match.group()
        at = match.end()
        nested = None
        if at < len(text) and text[at] == "{":
            nested, at = _parse_list(text, at + 1, field, depth + 1)
            if at >= len(text) or text[at] != "}":
                raise BadRequestData(f"{field}: the brace after {name!r} is not closed "
                                     f"in {text!r}")
            at += 1
        tree[name] = nested
        if at < len(text) and text[at] in ",|":
            at += 1
            continue
        if at < len(text) and text[at] == "}" and depth == 0:
            raise BadRequestData(f"{field}: unmatched '}}' at position {at} in {text!r}")
        return tree, at


def depth(tree: Projection | None) -> int:
    """How many relationship hops a projection reaches into (0: none)."""
    if not tree:
        return 0
    return max((1 + depth(sub) for sub in tree.values() if sub is not None), default=0)


def check_projections(pick: Projection | None, omit: Projection | None,
                      attrs: list[str] | None, join_level: int) -> None:
    """The rules of clause 4.21 between ``pick``, ``omit``, ``attrs`` and ``join``.

    Raises
    ------
    BadRequestData
        When ``pick`` or ``omit`` comes with ``attrs``, both name one member, or a
        nested projection reaches deeper than ``join_level`` (0 without ``join``).
    """
    if attrs is not None and (pick is not None or omit is not None):
        raise BadRequestData("attrs: cannot be combined with pick or omit")
    if pick is not None and omit is not None:
        both = sorted(set(pick) & set(omit))
        if both:
            raise BadRequestData(f"pick, omit: {both[0]!r} is in both")
    for name, tree in (("pick", pick), ("omit", omit)):
        hops = depth(tree)
        if hops > join_level:
            if join_level == 0:
                raise BadRequestData(f"{name}: a nested projection addresses linked "
                                     "entities, which needs join=inline or join=flat")
            raise BadRequestData(f"{name}: the projection reaches {hops} linked entities "
                                 f"deep, more than joinLevel={join_level}")


def picked_attributes(pick: Projection | None) -> list[str] | None:
    """The attribute names a pick selects entities by, or None when it keeps ``id`` or
    ``type`` (then every entity has a member left)."""
    if pick is None or any(member in pick for member in _CORE_MEMBERS):
        return None
    return list(pick)


def project(entity: dict, pick: Projection | None, omit: Projection | None) -> dict:
    """One level of ``pick`` / ``omit`` on a rendered entity (client names).

    A member that ``omit`` names with a nested projection stays: the nested part
    applies to its linked entity.
    """
    if pick is not None:
        entity = {k: v for k, v in entity.items() if k in pick or k == "@context"}
    if omit is not None:
        entity = {k: v for k, v in entity.items() if k not in omit or omit[k] is not None}
    return entity


def nested(tree: Projection | None, member: str) -> Projection | None:
    """The projection a linked entity reached through ``member`` gets."""
    if tree is None:
        return None
    return tree.get(member)


def is_empty(entity: dict[str, Any]) -> bool:
    """True when a projected entity has no member left."""
    return not any(k != "@context" for k in entity)
