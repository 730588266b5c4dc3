"""Settings for CityOS, read from ``CITYOS_*`` environment variables.

Every setting is also a command-line option of ``cityos serve`` (see ``cityos.cli``).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cityos.core.clock import parse_clock_start


class Settings(BaseSettings):
    """One place for every tunable of a CityOS process.

    Attributes
    ----------
    database_url : str
        ``sqlite:///path/to/file.db`` (the embedded default) or
        ``postgresql://user@host:port/dbname`` for PostgreSQL + PostGIS.
    mqtt_url : str or None
        ``mqtt://host:port``; when empty, MQTT ingestion and MQTT notifications are off.
    mqtt_client_id : str
        Fixed client id of the ingester, so the broker keeps its session over restarts.
    mqtt_allowed_tenants : list of str or None
        Tenants devices may publish to (``cityos/<tenant>/...``); None allows any valid
        tenant name. As an environment variable, a JSON list: ``'["acme", "north"]'``.
    bus_url : str
        ``memory://`` (in-process), ``redis://host:port/0`` or ``nats://host:port``.
    host, port : str, int
        Where ``cityos serve`` listens.
    default_tenant : str
        Tenant used when a request carries no ``NGSILD-Tenant`` header.
    auth_required : bool
        When false (tests of the pure API only), requests need no API key.
    max_body_bytes : int
        Largest accepted request body.
    max_query_limit : int
        Largest ``limit`` a query may ask for; larger gives TooManyResults.
    max_q_length : int
        Longest accepted ``q`` expression in characters.
    tile_url : str or None
        Raster tile URL template (``https://tiles.example.org/{z}/{x}/{y}.png``) the
        dashboard draws under the city's data; None (the default) draws the demo
        city's own vector base map and makes no request off the machine.
    transit_vehicle_stale_s : float
        A bus silent this long (seconds) leaves the GTFS-realtime vehicle positions and
        its trip's predictions end (the trip update is dropped; the stop boards show
        the timetable again).
    clock_start : str or None
        An ISO 8601 instant (``2026-12-07T07:30:00+08:00``) the process clock starts
        at, advancing at the real rate from there (see ``cityos.core.clock``); tests
        pin a server to a time of day with it. None (the default) is the system clock.
    """

    model_config = SettingsConfigDict(env_prefix="CITYOS_", extra="ignore")

    database_url: str = "sqlite:///cityos.db"
    mqtt_url: str | None = None
    mqtt_client_id: str = "cityos-ingest"
    mqtt_allowed_tenants: list[str] | None = None
    bus_url: str = "memory://"
    host: str = "127.0.0.1"
    port: int = 8000
    default_tenant: str = "default"
    auth_required: bool = True
    max_body_bytes: int = 8 * 1024 * 1024
    max_query_limit: int = 1000
    default_query_limit: int = 20
    max_q_length: int = 4096
    notification_retries: int = 5
    notification_backoff_s: float = 0.5
    tile_url: str | None = None
    transit_vehicle_stale_s: float = Field(300.0, gt=0)
    clock_start: str | None = None

    @field_validator("clock_start")
    @classmethod
    def _clock_start_is_an_instant(cls, value: str | None) -> str | None:
        if value:
            parse_clock_start(value)  # a clear error naming the field, at start-up
        return value or None


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
