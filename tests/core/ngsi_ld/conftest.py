"""Fixtures of the NGSI-LD API tests: an app over a SQLite file and keyed clients."""

from __future__ import annotations

import pytest
from ngsi_helpers import TestClient, keyed, make_settings


@pytest.fixture
def make_app(tmp_path):
    """Build an app; keyword arguments override settings."""
    from cityos.server import create_app

    def build(**overrides):
        return create_app(make_settings(tmp_path, **overrides))
    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    """A client of the default tenant with an operator key."""
    with TestClient(app) as test_client:
        test_client.headers.update(keyed(app))
        yield test_client
