"""Parameter checks of the temporal consumption operations (clauses 5.7.3, 5.7.4, 6.3.20)
and scope queries on the temporal query."""

from __future__ import annotations

import pytest
from ngsi_helpers import API, problem

TEMPORAL = f"{API}/temporal/entities"
WINDOW = {"timerel": "after", "timeAt": "2026-01-01T00:00:00Z"}


@pytest.fixture
def scoped(client):
    for n, scope in ((1, "/A/B"), (2, "/X")):
        created = client.post(TEMPORAL, json={
            "id": f"urn:x:{n}", "type": "T", "scope": scope,
            "level": [{"type": "Property", "value": n,
                       "observedAt": "2026-01-05T00:00:00Z"}]})
        assert created.status_code == 201, created.text
    return client


@pytest.mark.parametrize("path, params, kind", [
    ("", {"type": "T", "colour": "red"}, "InvalidRequest"),
    ("", {"type": "T", "options": "temporalValues,bogus"}, "InvalidRequest"),
    ("", {"type": "T", "format": "bogus"}, "InvalidRequest"),
    ("/urn:x:1", {"limit": "5"}, "InvalidRequest"),
    ("", {"type": "T", "pick": "level", "omit": "level"}, "BadRequestData"),
    ("", {"type": "T", "pick": "owner{name}"}, "BadRequestData"),
    ("", {"type": "T", "q": 'owner{name}=="x"'}, "BadRequestData"),
    ("", {"type": "T", "csf": "))bad(("}, "BadRequestData"),
    ("", {"type": "T", "orderBy": "name"}, "BadRequestData"),
    ("", {"attrs": "createdAt"}, "BadRequestData"),
    ("/thisisaninvaliduri", {}, "BadRequestData"),
    ("", {"type": "T", "pick": "level"}, "NotImplemented"),
    ("", {"type": "T", "orderBy": "id;desc"}, "NotImplemented"),
])
def test_temporal_parameters_are_checked(scoped, path, params, kind):
    status = 501 if kind == "NotImplemented" else 400
    problem(scoped.get(TEMPORAL + path, params={**WINDOW, **params}), status, kind)


def test_the_temporal_query_takes_a_scope_query(scoped):
    got = scoped.get(TEMPORAL, params={**WINDOW, "type": "T", "scopeQ": "/A/#"})
    assert got.status_code == 200, got.text
    assert [e["id"] for e in got.json()] == ["urn:x:1"]
    ordered = scoped.get(TEMPORAL, params={**WINDOW, "type": "T", "orderBy": "id"})
    assert [e["id"] for e in ordered.json()] == ["urn:x:1", "urn:x:2"]
