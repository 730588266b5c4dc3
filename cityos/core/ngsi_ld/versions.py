"""Version preference of a response (``Prefer: ngsi-ld=<major.minor>``, clause 4.3.6.8).

A consumer may ask for the payload of an earlier version of the API. Attribute types
that version did not know are reformatted as the type it did (a VocabProperty,
JsonProperty or ListProperty becomes a Property, a ListRelationship a Relationship);
the answer says ``Preference-Applied: ngsi-ld=<version>`` and is a 203 when the payload
was altered.
"""

from __future__ import annotations

import re

from cityos.core.entities import RESERVED_KEYS, VALUE_MEMBERS

#: The version CityOS speaks.
NATIVE = (1, 9)
#: The version each attribute type appeared in, and what it was before.
_INTRODUCED = {"VocabProperty": ((1, 8), "Property"), "JsonProperty": ((1, 8), "Property"),
               "ListProperty": ((1, 8), "Property"),
               "ListRelationship": ((1, 8), "Relationship")}
#: RFC 7240: preference names are case-insensitive, values may be quoted
_PREFER = re.compile(r"(?:^|[,;\s])ngsi-ld\s*=\s*\"?(\d+)\.(\d+)\"?", re.IGNORECASE)


def preferred_version(header: str | None) -> tuple[int, int] | None:
    """The version a ``Prefer`` header asks for, or None."""
    if not header:
        return None
    match = _PREFER.search(header)
    return (int(match[1]), int(match[2])) if match else None


def _downgrade(instance: dict, version: tuple[int, int]) -> tuple[dict, bool]:
    kind = instance.get("type")
    if kind not in _INTRODUCED or version >= _INTRODUCED[kind][0]:
        return instance, False
    member = VALUE_MEMBERS[kind]
    older = _INTRODUCED[kind][1]
    out = {k: v for k, v in instance.items() if k not in ("type", member)}
    out["type"] = older
    out["object" if older == "Relationship" else "value"] = instance.get(member)
    return out, True


def downgrade_entity(entity: dict, version: tuple[int, int]) -> tuple[dict, bool]:
    """The (normalized) entity in the payload of ``version``; True when it changed."""
    changed = False
    out = {}
    for name, attr in entity.items():
        if name in RESERVED_KEYS or not isinstance(attr, dict | list):
            out[name] = attr
            continue
        instances = attr if isinstance(attr, list) else [attr]
        new = []
        for instance in instances:
            if isinstance(instance, dict):
                instance, altered = _downgrade(instance, version)
                changed |= altered
            new.append(instance)
        out[name] = new if isinstance(attr, list) else new[0]
    return out, changed


def applied(version: tuple[int, int]) -> str:
    """The ``Preference-Applied`` value for ``version`` (never above the native one)."""
    major, minor = min(version, NATIVE)
    return f"ngsi-ld={major}.{minor}"
