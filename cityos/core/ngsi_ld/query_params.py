"""Checks of the query parameters of the NGSI-LD consumption operations (clause 6.3.20).

Each operation defines its URI parameters; anything else is an ``InvalidRequest``, and
so is a value of ``options`` or ``format`` that the operation does not define. The
representation asked for (``normalized``, ``concise`` or ``simplified``, clause 4.5) is
read here once, from ``format`` (which wins) and ``options``. Parameters that are
defined but malformed (``attrs``, ``joinLevel``, ``orderBy``, ``collation``, a
``near`` georel ...) are ``BadRequestData`` naming the parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fastapi import Request

from cityos.core.errors import BadRequestData, InvalidRequest, NgsiLdError

#: Entity members that are not attributes: never a valid name in ``attrs``.
ENTITY_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt",
                            "expiresAt", "@context"})
#: System attributes: a query naming only these is too wide (clause 5.7.2.4).
SYSTEM_NAMES = frozenset({"createdAt", "modifiedAt", "deletedAt", "expiresAt"})

_COMMON = ("local", "via")
QUERY_ENTITIES_PARAMS = frozenset({
    "id", "type", "idPattern", "attrs", "pick", "omit", "q", "csf", "georel", "geometry",
    "coordinates", "geoproperty", "geometryProperty", "lang", "scopeQ", "options",
    "format", "limit", "offset", "count", "join", "joinLevel", "containedBy", "datasetId",
    "entityMap", "orderBy", "orderFrom", "collation", "expandValues", "doNotCompact",
    *_COMMON})
RETRIEVE_ENTITY_PARAMS = frozenset({
    "attrs", "type", "pick", "omit", "geometryProperty", "lang", "options", "format",
    "join", "joinLevel", "containedBy", "datasetId", "entityMap", "expandValues",
    "doNotCompact", *_COMMON})
POST_QUERY_PARAMS = frozenset({
    "options", "format", "limit", "offset", "count", "lang", "geometryProperty",
    "entityMap", "expandValues", "doNotCompact", *_COMMON})
TYPES_PARAMS = frozenset({"details", "local", "via", "limit", "offset", "count"})
TYPE_INFO_PARAMS = frozenset({"local", "via"})
ATTRIBUTES_PARAMS = frozenset({"details", "local", "via", "count"})
ATTRIBUTE_INFO_PARAMS = frozenset({"local", "via"})

#: Temporal query members that only the temporal operation (clause 5.7.4) defines.
TEMPORAL_PARAMS = ("temporalQ", "timerel", "timeAt", "endTimeAt", "timeproperty", "lastN",
                   "aggrMethods", "aggrPeriodDuration")

REPRESENTATIONS = ("normalized", "concise", "simplified")
_FORMAT_NAMES = {"normalized": "normalized", "concise": "concise",
                 "simplified": "simplified", "keyValues": "simplified"}
#: Deepest linked-entity retrieval accepted (``joinLevel``).
MAX_JOIN_LEVEL = 10


class NotImplementedFeature(NgsiLdError):
    """501: a feature of the standard CityOS does not implement (docs/conformance.md)."""

    error_type, title, status = "NotImplemented", "Not implemented", 501


def defined_params(allowed: Iterable[str]) -> Callable[[Request], None]:
    """A FastAPI dependency refusing any query parameter outside ``allowed``.

    Raises
    ------
    InvalidRequest
        Naming the first undefined parameter (in request order).
    """
    names = frozenset(allowed)

    def check(request: Request) -> None:
        for key in request.query_params:
            if key not in names:
                raise InvalidRequest(f"{key}: not a query parameter of this operation "
                                     f"(defined: {', '.join(sorted(names))})")
    return check


@dataclass
class Representation:
    """How entities are asked for: the form, system attributes, count."""

    form: str = "normalized"
    sys_attrs: bool = False
    count: bool = False

    @property
    def simplified(self) -> bool:
        return self.form == "simplified"


def representation(options: str | None, format_: str | None,
                   allowed: Iterable[str] = ("sysAttrs",)) -> Representation:
    """The representation of ``options`` and ``format`` (``format`` wins).

    ``options`` may hold ``keyValues`` / ``simplified``, ``concise``, ``normalized`` and
    the flags in ``allowed`` (``sysAttrs``, ``count``).

    Raises
    ------
    InvalidRequest
        For a value neither parameter defines.
    """
    flags = set(allowed)
    chosen = [o.strip() for o in (options or "").split(",") if o.strip()]
    for option in chosen:
        if option not in _FORMAT_NAMES and option not in flags:
            raise InvalidRequest(f"options: {option!r} is not one of "
                                 f"{', '.join([*_FORMAT_NAMES, *sorted(flags)])}")
    result = Representation(sys_attrs="sysAttrs" in chosen, count="count" in chosen)
    forms = {_FORMAT_NAMES[o] for o in chosen if o in _FORMAT_NAMES}
    for form in ("simplified", "concise", "normalized"):
        if form in forms:
            result.form = form
            break
    if format_ is not None and format_ != "":
        if format_ not in _FORMAT_NAMES:
            raise InvalidRequest(f"format: {format_!r} is not one of "
                                 f"{', '.join(_FORMAT_NAMES)}")
        result.form = _FORMAT_NAMES[format_]
    return result


def attrs_list(value: str | list | None, field: str = "attrs") -> list[str] | None:
    """The attribute names of ``attrs`` (text ``a,b`` or a list), checked.

    Raises
    ------
    BadRequestData
        For an empty list, an empty name, or an entity member such as ``id``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")]
    elif isinstance(value, list):
        names = value
    else:
        raise BadRequestData(f"{field}: must be a list of attribute names")
    if not names or names == [""]:
        raise BadRequestData(f"{field}: an empty list of attributes is not allowed")
    for name in names:
        if not isinstance(name, str) or not name:
            raise BadRequestData(f"{field}: every attribute name must be a non-empty string")
        if name in ENTITY_MEMBERS - SYSTEM_NAMES:
            raise BadRequestData(f"{field}: {name!r} is an entity member, not an attribute")
    return names


def join_params(join: str | None, join_level: str | int | None) -> tuple[str | None, int]:
    """``join`` (``flat``, ``inline`` or ``@none``) and ``joinLevel`` (1 by default).

    Returns ``(None, 0)`` when no linked entity is to be retrieved.

    Raises
    ------
    BadRequestData
        For another ``join`` or a ``joinLevel`` that is not a positive integer.
    """
    if join in (None, "", "@none"):
        if join_level not in (None, ""):
            _level(join_level)  # still checked
        return None, 0
    if join not in ("flat", "inline"):
        raise BadRequestData(f"join: {join!r} is not one of flat, inline, @none")
    level = 1 if join_level in (None, "") else _level(join_level)
    return join, level


def _level(value: str | int) -> int:
    if isinstance(value, bool):
        raise BadRequestData(f"joinLevel: {value!r} is not a positive integer")
    try:
        level = int(value)
    except (TypeError, ValueError):
        raise BadRequestData(f"joinLevel: {value!r} is not a positive integer") from None
    if level < 1:
        raise BadRequestData(f"joinLevel: {level} is not a positive integer")
    if level > MAX_JOIN_LEVEL:
        raise BadRequestData(f"joinLevel: {level} is more than {MAX_JOIN_LEVEL}")
    return level


def no_temporal_members(names: Iterable[str], where: str = "") -> None:
    """Refuse temporal query members outside the temporal operation (Table 5.2.23-1)."""
    for name in names:
        if name in TEMPORAL_PARAMS:
            raise BadRequestData(f"{where}{name}: only the temporal query (clause 5.7.4) "
                                 "takes a temporal query")


_DISTANCE = re.compile(r"(maxDistance|minDistance)==(.+)")


def check_near(georel: str | None, field: str = "georel") -> None:
    """The 4.10 grammar of ``near``: exactly one distance, a positive finite number.

    Raises
    ------
    BadRequestData
        For ``near`` without a distance, with two, or with a distance that is zero,
        negative or not a finite number.
    """
    if not isinstance(georel, str):
        return
    rel, *modifiers = [part.strip() for part in georel.split(";")]
    if rel != "near":
        return
    if len(modifiers) != 1:
        raise BadRequestData(f"{field}: near takes exactly one of maxDistance==<metres> or "
                             f"minDistance==<metres>, got {georel!r}")
    match = _DISTANCE.fullmatch(modifiers[0].replace(" ", ""))
    if not match:
        raise BadRequestData(f"{field}: {modifiers[0]!r} is not maxDistance==<metres> or "
                             "minDistance==<metres>")
    try:
        metres = float(match[2])
    except ValueError:
        metres = math.nan
    if not math.isfinite(metres) or metres <= 0 or match[2].lower().lstrip("+") in (
            "inf", "infinity", "nan"):
        raise BadRequestData(f"{field}: {match[1]} must be a positive number of metres, "
                             f"got {match[2]!r}")


_LANGTAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def collation_tag(text: str | None, field: str = "collation") -> str | None:
    """A BCP 47 language tag of ``collation`` (``und``, ``de-u-co-phonebk`` ...).

    Raises
    ------
    BadRequestData
        When the text is not a well-formed tag.
    """
    if text is None:
        return None
    if not isinstance(text, str) or not _LANGTAG.fullmatch(text):
        raise BadRequestData(f"{field}: {text!r} is not a BCP 47 language tag")
    return text
