"""Entity ids as NGSI-LD requires them: absolute URIs (RFC 3986), checked character by
character so that a bad id is refused with the character and its position.

An id is ``scheme ":" rest`` with ``scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )``
and ``rest`` made of the URI characters (unreserved, reserved, ``%`` followed by two hex
digits), ``[`` and ``]`` only in an authority (``http://[::1]/``) and ``#`` once (the
fragment). Refused everywhere: control characters (U+0000-U+001F, U+007F-U+009F) and
spaces of any kind. CityOS has always stored non-ASCII ids (``urn:ngsi-ld:Street:Straße``),
so the characters RFC 3987 allows in an IRI (``ucschar``; private-use ones in the query
only) are kept accepted, except those it forbids outright (bidirectional formatting
characters, section 4.1), surrogates and non-characters. A client that needs a plain
URI percent-encodes them.

Errors never echo a raw control character: the offending character is written as
``\\uXXXX`` and positions count from 1.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from cityos.core.errors import BadRequestData

#: The common case, all ASCII and well formed, in one regular expression; anything else
#: goes through the character-by-character check (which also names what is wrong).
_PLAIN_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*:(?=.)"
    r"(?://(?:[A-Za-z0-9\-._~!$&'()*+,;=:@\[\]]|%[0-9A-Fa-f]{2})*)?"
    r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*"
    r"(?:#(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
#: unreserved + sub-delims + ":" "@" "/" "?" (RFC 3986 section 2)
_URI_ASCII = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                       "-._~!$&'()*+,;=:@/?")
_HEX = frozenset("0123456789abcdefABCDEF")
#: RFC 3987 section 4.1: an IRI MUST NOT contain these bidirectional formatting characters.
_BIDI_FORMATTING = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e")
#: Longest id shown back in an error.
_SHOWN_CHARS = 120


def escaped(text: str) -> str:
    """``text`` with every control, space or otherwise invisible character as ``\\uXXXX``.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
        Printable text, safe to put in an error detail or a log line.
    """
    return "".join(ch if ch.isprintable() and not ch.isspace() or ch == " "
                   else _code(ch) for ch in text)


def _code(ch: str) -> str:
    point = ord(ch)
    return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


def _shown(value: Any) -> str:
    if not isinstance(value, str):
        return repr(value)
    cut = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
    return "'" + escaped(cut) + "'"


def uri_problem(text: Any) -> str | None:
    """What keeps ``text`` from being an absolute URI, or None when it is one.

    Parameters
    ----------
    text : Any
        A candidate id.

    Returns
    -------
    str or None
        A short reason naming the first offending character and its position
        (counting from 1), e.g. ``control character \\u0000 at position 16``.
    """
    if not isinstance(text, str):
        return "not a string"
    if _PLAIN_URI.fullmatch(text):
        return None
    if not text:
        return "empty"
    problem = _character_problem(text)
    if problem:
        return problem
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return ("no scheme: a URI starts with a scheme and ':' "
                "(e.g. urn:ngsi-ld:Vehicle:bus-17)")
    if not rest:
        return "nothing after the scheme"
    return None


def _character_problem(text: str) -> str | None:
    """The first character that no URI (or IRI) may hold where it stands."""
    in_query = in_fragment = False
    authority_end = _authority_end(text)
    for index, ch in enumerate(text):
        where = f"at position {index + 1}"
        point = ord(ch)
        if point < 0x20 or 0x7F <= point <= 0x9F:
            return f"control character {_code(ch)} {where}"
        if ch.isspace():
            return f"space {_code(ch)} {where}"
        if ch in _URI_ASCII:
            in_query = in_query or ch == "?"
            continue
        if ch == "%":
            if not (len(text) > index + 2 and text[index + 1] in _HEX
                    and text[index + 2] in _HEX):
                return f"'%' {where} is not followed by two hex digits"
        elif ch == "#":
            if in_fragment:
                return f"a second '#' {where}"
            in_fragment = True
        elif ch in "[]":
            if index >= authority_end:
                return f"'{ch}' {where} is only allowed in the host of an authority"
        elif point < 0x80:
            return f"character {ch!r} {where} is not allowed in a URI"
        elif not _iri_char(ch, in_query and not in_fragment):
            return f"character {_code(ch)} {where} is not allowed in a URI or IRI"
    return None


def _authority_end(text: str) -> int:
    """Index just past the authority (``scheme://authority``), or 0 when there is none."""
    scheme_end = text.find(":")
    if scheme_end < 0 or not text.startswith("//", scheme_end + 1):
        return 0
    start = scheme_end + 3
    ends = [i for i in (text.find(c, start) for c in "/?#") if i >= 0]
    return min(ends) if ends else len(text)


#: Characters that show as nothing (format characters, variation selectors, Hangul
#: fillers, the blank Braille pattern): an id holding one looks like another id.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


def _iri_char(ch: str, in_query: bool) -> bool:
    """RFC 3987 ``ucschar`` (and ``iprivate`` in the query), less what section 4.1 bars
    and less the invisible characters."""
    if ch in _BIDI_FORMATTING or ch in _INVISIBLE:
        return False
    point = ord(ch)
    if 0xFE00 <= point <= 0xFE0F or 0xE0100 <= point <= 0xE01EF:  # variation selectors
        return False
    category = unicodedata.category(ch)
    if category == "Co":
        return in_query
    return category not in ("Cs", "Cn", "Cf")  # Cf: zero-width space, byte order mark


def is_uri(text: Any) -> bool:
    """True when ``text`` is an absolute URI (or IRI) as NGSI-LD requires for ids."""
    return uri_problem(text) is None


def check_uri(text: Any, field: str) -> str:
    """Return ``text`` when it is an absolute URI, else raise BadRequestData.

    Parameters
    ----------
    text : Any
        The value received.
    field : str
        The field named in the error (``id``, ``entities[2].id``, ...).

    Returns
    -------
    str
        ``text`` unchanged.

    Raises
    ------
    BadRequestData
        ``"<field>: '<id, escaped>' is not a URI (<reason>)"``.
    """
    problem = uri_problem(text)
    if problem is None:
        return text
    if not isinstance(text, str):
        raise BadRequestData(f"{field}: {text!r} is not a URI")
    raise BadRequestData(f"{field}: {_shown(text)} is not a URI ({problem})")
