"""Helpers of the NGSI-LD API tests (imported by the tests and their conftest)."""

from __future__ import annotations

import warnings

from cityos.config import Settings
from cityos.core.tenancy import create_key

with warnings.catch_warnings():  # starlette's testclient warns about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: F401  (re-exported)

API = "/ngsi-ld/v1"


def make_settings(tmp_path, **overrides) -> Settings:
    """Settings for a test app: a SQLite file in ``tmp_path``, no MQTT, auth on."""
    values = dict(database_url=f"sqlite:///{tmp_path}/city.db", mqtt_url=None,
                  bus_url="memory://", auth_required=True, default_tenant="default",
                  max_body_bytes=64 * 1024, max_query_limit=1000, default_query_limit=20,
                  max_q_length=4096)
    values.update(overrides)
    return Settings(**values)


def keyed(app, tenant: str = "default", role: str = "operator") -> dict:
    """Headers with a new key of ``role`` for ``tenant``."""
    token, _ = create_key(app.state.store, tenant, role)
    return {"Authorization": f"Bearer {token}"}


def vehicle(number: int, speed: float = 30.0, lon: float = 8.54, lat: float = 47.37,
            **extra) -> dict:
    """A Vehicle entity in normalised NGSI-LD."""
    entity = {
        "id": f"urn:ngsi-ld:Vehicle:{number}",
        "type": "Vehicle",
        "speed": {"type": "Property", "value": speed, "unitCode": "KMH"},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [lon, lat]}},
    }
    entity.update(extra)
    return entity


def problem(response, status: int, kind: str) -> dict:
    """Assert a ProblemDetails answer of ``status`` and NGSI-LD type ``kind``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"].endswith("/" + kind), body
    assert body["status"] == status
    return body
