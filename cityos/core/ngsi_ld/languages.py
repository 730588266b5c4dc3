"""LanguageProperty filtering by the ``lang`` parameter (clause 4.15, RFC 4647 lookup).

``lang`` is a language-range list in the ``Accept-Language`` style (``fr-CH,fr;q=0.9,
*;q=0.5``). Ranges are tried by quality value (ties keep their order); a range matches
a ``languageMap`` tag case-insensitively, exactly, by truncation of the range
(``nl-BE`` -> ``nl``) or as a prefix of a longer tag (``en`` -> ``en-US``); ``*`` takes
any language. When nothing matches, any supported language is served. A filtered
LanguageProperty becomes a Property whose ``lang`` names the language served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cityos.core.entities import RESERVED_KEYS
from cityos.core.errors import BadRequestData

_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_QUALITY = re.compile(r"q=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")


@dataclass(frozen=True)
class LanguagePreference:
    """Language ranges, best first."""

    ranges: tuple[str, ...]


def parse_lang(text: str | None, field: str = "lang") -> LanguagePreference | None:
    """Parse ``lang``; None when absent.

    Raises
    ------
    BadRequestData
        For a range that is not a language tag or ``*``, or a bad quality value.
    """
    if text is None:
        return None
    weighted = []
    for position, part in enumerate(text.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        tag = pieces[0]
        if not _RANGE.fullmatch(tag):
            raise BadRequestData(f"{field}: {tag!r} is not a language tag or '*'")
        quality = 1.0
        for param in pieces[1:]:
            match = _QUALITY.fullmatch(param)
            if not match:
                raise BadRequestData(f"{field}: {param!r} is not a quality value q=0..1")
            quality = float(match[1])
        if quality > 0:
            weighted.append((-quality, position, tag))
    return LanguagePreference(tuple(tag for _, _, tag in sorted(weighted)))


def best_language(language_map: dict, preference: LanguagePreference) -> str | None:
    """The tag of ``language_map`` to serve (None for an empty map)."""
    if not language_map:
        return None
    tags = list(language_map)
    lowered = [t.lower() for t in tags]
    for wanted in preference.ranges:
        if wanted == "*":
            return tags[0]
        wanted = wanted.lower()
        candidate = wanted
        while candidate:
            if candidate in lowered:
                return tags[lowered.index(candidate)]
            candidate = candidate.rpartition("-")[0]
        for tag, low in zip(tags, lowered, strict=True):
            if low.startswith(wanted + "-"):
                return tag
    return tags[0]


def _filter_instance(instance: dict, preference: LanguagePreference) -> dict:
    if instance.get("type") != "LanguageProperty":
        return instance
    language_map = instance.get("languageMap") or {}
    tag = best_language(language_map, preference)
    out = {"type": "Property", "value": language_map.get(tag), "lang": tag}
    out.update({k: v for k, v in instance.items() if k not in ("type", "languageMap")})
    return out


def filter_languages(entity: dict, preference: LanguagePreference) -> dict:
    """The entity with each LanguageProperty reduced to one language."""
    out = {}
    for name, attr in entity.items():
        if name in RESERVED_KEYS:
            out[name] = attr
        elif isinstance(attr, list):
            out[name] = [_filter_instance(i, preference) for i in attr]
        else:
            out[name] = _filter_instance(attr, preference)
    return out
