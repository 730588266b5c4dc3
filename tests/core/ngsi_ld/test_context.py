"""JSON-LD @context handling: expansion to stored names, compaction back, no network."""

from __future__ import annotations

import json
import logging

import pytest
from ngsi_helpers import API, problem, vehicle
from starlette.requests import Request

from cityos.core.errors import BadRequestData
from cityos.core.ngsi_ld.context import (
    CORE,
    CORE_CONTEXT_URL,
    NotAcceptable,
    canonical_entity,
    compact_entity,
    context_url_from_link,
    load_context_dir,
    negotiate,
    register_context,
    resolve_context,
)

EX = "https://example.org/city#"
INLINE = {"ex": EX, "temp": "ex:temperature", "Bus": f"{EX}Bus",
          "location": "https://example.org/notTheCoreLocation"}
LINK_URL = "https://contexts.example.org/city.jsonld"


def link(url: str) -> dict:
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; '
                    'type="application/ld+json"'}


# ------------------------------------------------------------------ unit level
def test_core_context_keeps_plain_names():
    assert CORE.to_canonical("speed") == "speed"
    assert CORE.to_canonical("location") == "location"
    assert CORE.to_canonical("https://uri.etsi.org/ngsi-ld/default-context/speed") == "speed"
    assert CORE.to_canonical("https://schema.org/name") == "https://schema.org/name"
    assert CORE.to_canonical("ngsi-ld:location") == "location"
    assert CORE.from_canonical("https://schema.org/name") == "https://schema.org/name"


def test_user_context_expands_terms_prefixes_and_types():
    context = resolve_context(INLINE)
    assert context.to_canonical("temp") == f"{EX}temperature"
    assert context.to_canonical("ex:speed") == f"{EX}speed"
    assert context.to_canonical("Bus") == f"{EX}Bus"
    assert context.to_canonical("unmapped") == "unmapped"  # default vocabulary
    # location is a protected core term: the client's redefinition is ignored
    assert context.to_canonical("location") == "location"
    # and back: the term, else prefix:suffix, else the stored name
    assert context.from_canonical(f"{EX}temperature") == "temp"
    assert context.from_canonical(f"{EX}speed") == "ex:speed"
    assert context.from_canonical("unmapped") == "unmapped"


def test_user_vocab_applies_to_unmapped_terms():
    context = resolve_context({"@vocab": "https://vocab.example.org/"})
    assert context.to_canonical("speed") == "https://vocab.example.org/speed"
    assert context.from_canonical("https://vocab.example.org/speed") == "speed"
    # a name stored from a core-only client comes back as its full IRI
    assert context.from_canonical("speed") == \
        "https://uri.etsi.org/ngsi-ld/default-context/speed"


def test_entity_round_trip_through_a_context():
    context = resolve_context(INLINE)
    body = {"@context": INLINE, "id": "urn:x:1", "type": "Bus",
            "temp": {"type": "Property", "value": 21, "observedAt": "2026-01-01T00:00:00Z",
                     "ex:sensor": {"type": "Relationship", "object": "urn:x:s"}},
            "plain": 3}
    stored = canonical_entity(body, context)
    assert stored == {"id": "urn:x:1", "type": f"{EX}Bus",
                      f"{EX}temperature": {"type": "Property", "value": 21,
                                           "observedAt": "2026-01-01T00:00:00Z",
                                           f"{EX}sensor": {"type": "Relationship",
                                                           "object": "urn:x:s"}},
                      "plain": 3}
    back = compact_entity(stored, context)
    assert back == {k: v for k, v in body.items() if k != "@context"}


def test_unknown_remote_context_resolves_to_default_vocabulary(caplog):
    with caplog.at_level(logging.WARNING, logger="cityos.core.ngsi_ld.context"):
        context = resolve_context("https://unknown.example.org/never-fetched.jsonld")
    assert context.to_canonical("speed") == "speed"
    assert "not fetched" in caplog.text


def test_core_context_urls_are_the_core_context():
    assert resolve_context(CORE_CONTEXT_URL) is CORE
    assert resolve_context(
        ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]) is CORE


def test_registered_contexts_and_context_directory(tmp_path):
    (tmp_path / "city.jsonld").write_text(json.dumps(
        {"@context": {"level": "https://water.example.org/level"}}))
    (tmp_path / "index.json").write_text(json.dumps({LINK_URL: "city.jsonld"}))
    assert load_context_dir(tmp_path) == 1
    context = resolve_context(LINK_URL)
    assert context.to_canonical("level") == "https://water.example.org/level"
    register_context("https://other.example.org/c.jsonld", {"depth": "urn:depth"})
    assert resolve_context("https://other.example.org/c.jsonld").to_canonical("depth") == \
        "urn:depth"
    assert load_context_dir(tmp_path / "missing") == 0


def test_bad_contexts_are_bad_request_data():
    with pytest.raises(BadRequestData, match="@context"):
        resolve_context(42)
    with pytest.raises(BadRequestData, match="'speed'"):
        resolve_context({"speed": 3})


def test_link_header_parsing():
    header = link(LINK_URL)["Link"]
    assert context_url_from_link(header) == LINK_URL
    assert context_url_from_link('<https://a.example/x>; rel="next"') is None
    with pytest.raises(BadRequestData, match="more than one"):
        context_url_from_link(f"{header}, {header}")


def _request(accept: str | None) -> Request:
    headers = [(b"accept", accept.encode())] if accept is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers,
                    "query_string": b""})


@pytest.mark.parametrize(("accept", "chosen"), [
    (None, "application/json"),
    ("*/*", "application/json"),
    ("application/*", "application/json"),
    ("application/ld+json", "application/ld+json"),
    ("application/json;q=0.5, application/ld+json", "application/ld+json"),
    ("text/html, application/json;q=0.1", "application/json"),
])
def test_negotiation(accept, chosen):
    assert negotiate(_request(accept)) == chosen


def test_negotiation_refuses_what_it_cannot_give():
    with pytest.raises(NotAcceptable):
        negotiate(_request("text/csv"))
    with pytest.raises(NotAcceptable):
        negotiate(_request("application/geo+json"))  # only where GeoJSON is offered


# ------------------------------------------------------------------ API level
def test_json_ld_body_with_inline_context_is_stored_expanded(client):
    body = {"@context": [INLINE, CORE_CONTEXT_URL], "id": "urn:x:bus-1", "type": "Bus",
            "temp": {"type": "Property", "value": 21}}
    created = client.post(f"{API}/entities", json=body,
                          headers={"Content-Type": "application/ld+json"})
    assert created.status_code == 201, created.text
    # a client without a context sees full IRIs
    plain = client.get(f"{API}/entities/urn:x:bus-1").json()
    assert plain["type"] == f"{EX}Bus"
    assert plain[f"{EX}temperature"]["value"] == 21
    # a client with the same context (registered, sent by Link) gets its terms back
    register_context(LINK_URL, INLINE)
    own = client.get(f"{API}/entities/urn:x:bus-1", headers=link(LINK_URL))
    assert own.json() == {"id": "urn:x:bus-1", "type": "Bus",
                          "temp": {"type": "Property", "value": 21}}
    assert LINK_URL in own.headers["link"]
    ld = client.get(f"{API}/entities/urn:x:bus-1",
                    headers={**link(LINK_URL), "Accept": "application/ld+json"}).json()
    assert ld["@context"] == LINK_URL and ld["temp"]["value"] == 21


def test_query_parameters_use_the_request_context(client):
    register_context(LINK_URL, INLINE)
    for number, temp in ((1, 18), (2, 25)):
        client.post(f"{API}/entities", headers=link(LINK_URL), json={
            "id": f"urn:x:bus-{number}", "type": "Bus",
            "temp": {"type": "Property", "value": temp}})
    hot = client.get(f"{API}/entities", headers=link(LINK_URL),
                     params={"type": "Bus", "q": "temp>20", "attrs": "temp"})
    assert hot.status_code == 200, hot.text
    assert hot.json() == [{"id": "urn:x:bus-2", "type": "Bus",
                           "temp": {"type": "Property", "value": 25}}]
    # without the context, the short names mean something else: nothing matches
    assert client.get(f"{API}/entities", params={"type": "Bus"}).json() == []
    full = client.get(f"{API}/entities", params={"type": f"{EX}Bus",
                                                 "q": f"{EX}temperature>20"})
    assert [e["id"] for e in full.json()] == ["urn:x:bus-2"]
    types = client.get(f"{API}/types", headers=link(LINK_URL)).json()
    assert types["typeList"] == ["Bus"]
    assert client.get(f"{API}/types/Bus", headers=link(LINK_URL)).json()["entityCount"] == 2
    attrs = client.get(f"{API}/attributes/temp", headers=link(LINK_URL)).json()
    assert attrs["id"] == f"{EX}temperature" and attrs["attributeCount"] == 2


def test_unknown_link_context_does_not_fail_the_request(client):
    created = client.post(f"{API}/entities", json=vehicle(1),
                          headers=link("https://smartdatamodels.example/ctx.jsonld"))
    assert created.status_code == 201
    got = client.get(f"{API}/entities/urn:ngsi-ld:Vehicle:1")
    assert got.json()["speed"]["value"] == 30.0


def test_content_type_rules(client):
    ld = {"Content-Type": "application/ld+json"}
    body = problem(client.post(f"{API}/entities", json=vehicle(1), headers=ld), 400,
                   "BadRequestData")
    assert body["detail"] == ("@context is required in the body when the Content-Type is "
                              "application/ld+json")
    with_context = {**vehicle(1), "@context": CORE_CONTEXT_URL}
    body = problem(client.post(f"{API}/entities", json=with_context), 400, "BadRequestData")
    assert body["detail"].startswith("@context is not allowed in the body when the "
                                     "Content-Type is application/json")
    assert client.post(f"{API}/entities", json=with_context, headers=ld).status_code == 201
    body = problem(client.post(f"{API}/entities", content=b"id=1",
                               headers={"Content-Type": "text/plain"}), 415,
                   "UnsupportedMediaType")
    assert "text/plain" in body["detail"]
