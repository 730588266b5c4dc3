"""Entity ids are absolute URIs (RFC 3986): the checker names the character and where."""

from __future__ import annotations

import pytest

from cityos.core.errors import BadRequestData
from cityos.core.ngsi_ld.ids import check_uri, escaped, is_uri, uri_problem


@pytest.mark.parametrize("text, problem", [
    ("urn:ngsi-ld:T:a\x00b", "control character \\u0000 at position 16"),
    ("urn:ngsi-ld:T:a\nb", "control character \\u000a at position 16"),
    ("urn:ngsi-ld:T:ab\n", "control character \\u000a at position 17"),  # '$' let it pass
    ("urn:ngsi-ld:T:a\tb", "control character \\u0009 at position 16"),
    ("urn:ngsi-ld:T:a\x7fb", "control character \\u007f at position 16"),
    ("urn:ngsi-ld:T:a\x85b", "control character \\u0085 at position 16"),
    ("urn:ngsi-ld:T:a b", "space \\u0020 at position 16"),
    ("urn:ngsi-ld:T:a\u3000b", "space \\u3000 at position 16"),
    ("urn:ngsi-ld:T:a\u00a0b", "space \\u00a0 at position 16"),
    ("bus-17", "no scheme: a URI starts with a scheme and ':' (e.g. urn:ngsi-ld:Vehicle:bus-17)"),
    ("1urn:x:y", "no scheme: a URI starts with a scheme and ':' (e.g. urn:ngsi-ld:Vehicle:bus-17)"),
    (":x", "no scheme: a URI starts with a scheme and ':' (e.g. urn:ngsi-ld:Vehicle:bus-17)"),
    ("urn:", "nothing after the scheme"),
    ("", "empty"),
    ("urn:ngsi-ld:T:50%", "'%' at position 17 is not followed by two hex digits"),
    ("urn:ngsi-ld:T:%zz", "'%' at position 15 is not followed by two hex digits"),
    ("urn:ngsi-ld:T:<a>", "character '<' at position 15 is not allowed in a URI"),
    ('urn:ngsi-ld:T:"a"', "character '\"' at position 15 is not allowed in a URI"),
    ("urn:ngsi-ld:T:[1]", "'[' at position 15 is only allowed in the host of an authority"),
    ("urn:a#b#c", "a second '#' at position 8"),
    ("urn:ngsi-ld:T:\u202eevil", "character \\u202e at position 15 is not allowed in a URI or IRI"),
    ("urn:ngsi-ld:T:\ud800", "character \\ud800 at position 15 is not allowed in a URI or IRI"),
    ("urn:ngsi-ld:T:\uffff", "character \\uffff at position 15 is not allowed in a URI or IRI"),
    ("urn:ngsi-ld:T:\ue000", "character \\ue000 at position 15 is not allowed in a URI or IRI"),
    (None, "not a string"),
    (17, "not a string"),
])
def test_what_is_wrong_with_an_id(text, problem):
    assert uri_problem(text) == problem
    assert not is_uri(text)


@pytest.mark.parametrize("text", [
    "urn:ngsi-ld:Vehicle:bus-17",
    "urn:ngsi-ld:GtfsStop:Blok%20M",           # percent-encoded space
    "urn:ngsi-ld:Street:Stra%C3%9Fe",           # percent-encoded UTF-8
    "urn:ngsi-ld:Street:Straße",                # an IRI: CityOS has always taken these
    "urn:ngsi-ld:Station:東京",
    "https://example.org/things/7?x=1&y=2#top",
    "http://[::1]:8080/notify",                 # brackets in the host only
    "https://example.org/p?q=\ue000",           # RFC 3987 iprivate, in the query
    "mailto:ops@example.org",
    "a+b.c-d:x",
])
def test_valid_ids(text):
    assert uri_problem(text) is None
    assert check_uri(text, "id") == text


def test_the_error_names_the_field_and_escapes_the_character():
    with pytest.raises(BadRequestData) as caught:
        check_uri("urn:ngsi-ld:T:a\x00b", "entities[2].id")
    detail = caught.value.detail
    assert detail == ("entities[2].id: 'urn:ngsi-ld:T:a\\u0000b' is not a URI "
                      "(control character \\u0000 at position 16)")
    assert "\x00" not in detail


def test_a_long_id_is_cut_in_the_error():
    with pytest.raises(BadRequestData) as caught:
        check_uri("urn:x:" + "a" * 500 + " ", "id")
    assert caught.value.detail == (f"id: 'urn:x:{'a' * 114}...' is not a URI "
                                   "(space \\u0020 at position 507)")


def test_a_value_that_is_not_a_string():
    with pytest.raises(BadRequestData) as caught:
        check_uri(None, "id")
    assert caught.value.detail == "id: None is not a URI"


def test_escaped_keeps_printable_text():
    assert escaped("a b\x00\n\u200e東\U0001f600\U000e0001") == \
        "a b\\u0000\\u000a\\u200e東\U0001f600\\U000e0001"
