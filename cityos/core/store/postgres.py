"""The production backend: PostgreSQL 15 with PostGIS.

Tables (created on open when missing):

``entities``
    One row per (tenant, id): the canonical body as ``jsonb``, its types as ``text[]``
    (GIN index, so a query by type is an index lookup) and the ``location`` GeoProperty
    as a PostGIS ``geometry(Geometry, 4326)`` with a GiST index for the bounding-box
    prefilter. With several ``location`` instances (datasetId) the column holds their
    collection, so the prefilter never drops an entity that one instance would match.
``history``
    One row per attribute instance and instant. It is **BRIN-indexed** on
    ``observed_us`` (not partitioned): rows arrive roughly in time order, so a BRIN
    index costs a few pages for billions of rows and lets a city-wide time slice skip
    most of the table, while the UNIQUE (tenant, entity, attribute, dataset, instant)
    B-tree serves the per-entity time-range and lastN queries (a loose index scan over
    the entity's series, then one range or ``LIMIT N`` probe per series) and makes a
    redelivered observation an ``ON CONFLICT DO NOTHING``.
``documents``
    Small JSON documents (subscriptions, API keys, dead letters) by (tenant, kind, key).

Key text columns use the ``"C"`` collation, so ids sort by code point exactly as the
SQLite backend sorts them.

Concurrency: :meth:`PostgresStore.transaction` reads with ``SELECT ... FOR UPDATE``, so
read-modify-write from several API workers serialises on each entity. An id that does
not exist yet has no row to lock; its creation is serialised by a transaction-scoped
advisory lock on one of a few stripes of the (tenant, id) hash, and the id is looked up
again once the lock is held. Writes are buffered in the transaction and flushed at
commit in one statement per table (``INSERT ... SELECT FROM unnest(arrays)``), so a
batch of a thousand entities costs a handful of round trips.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from cityos.core.entities import attribute_instances, entity_types
from cityos.core.events import EventBus
from cityos.core.store.base import ContextStore, HistoryRow, StoredEntity, StoreTransaction
from cityos.core.timefmt import now_utc, to_micros
from cityos.core.urls import redact_url

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TABLE IF NOT EXISTS entities (
    tenant text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    types text[] NOT NULL,
    doc jsonb NOT NULL,
    created_us bigint NOT NULL,
    modified_us bigint NOT NULL,
    location geometry(Geometry, 4326),
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS entities_location ON entities USING gist (location);
CREATE INDEX IF NOT EXISTS entities_types ON entities USING gin (types);
CREATE TABLE IF NOT EXISTS history (
    tenant text COLLATE "C" NOT NULL,
    entity_id text COLLATE "C" NOT NULL,
    attribute text COLLATE "C" NOT NULL,
    dataset_id text COLLATE "C" NOT NULL,
    observed_us bigint NOT NULL,
    entity_type text NOT NULL,
    instance jsonb NOT NULL,
    number double precision
);
CREATE UNIQUE INDEX IF NOT EXISTS history_series_time
    ON history (tenant, entity_id, attribute, dataset_id, observed_us);
CREATE INDEX IF NOT EXISTS history_observed_brin ON history USING brin (observed_us);
CREATE TABLE IF NOT EXISTS documents (
    tenant text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    doc jsonb NOT NULL,
    created_us bigint NOT NULL,
    PRIMARY KEY (tenant, kind, key)
);
"""

#: Advisory-lock class id (first key) of the CityOS schema and entity-creation locks.
_LOCK_CLASS = 0x0C17
_SCHEMA_LOCK = 0
#: Creation of new ids is serialised on this many stripes per database: few enough that
#: a batch of thousands of new ids takes a bounded number of locks (the server's lock
#: table is small), many enough that unrelated single creations rarely wait.
_CREATE_STRIPES = 64
_SCAN_CHUNK = 500  # entities fetched per keyset page while scanning
_WRITE_CHUNK = 5000  # rows per INSERT ... unnest statement
# The arrays travel in binary (%b): psycopg's text-mode array quoting of JSON documents
# costs several times the insert itself.

_UPSERT_ENTITIES = """
INSERT INTO entities (tenant, id, types, doc, created_us, modified_us, location)
SELECT %s, u.id, ARRAY(SELECT jsonb_array_elements_text(u.types::jsonb)), u.doc::jsonb,
       u.created_us, u.modified_us,
       ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(u.geojson), 4326))
FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::text[])
     AS u(id, types, doc, created_us, modified_us, geojson)
ON CONFLICT (tenant, id) DO UPDATE SET
    types = EXCLUDED.types, doc = EXCLUDED.doc, created_us = EXCLUDED.created_us,
    modified_us = EXCLUDED.modified_us, location = EXCLUDED.location
"""

_INSERT_HISTORY = """
INSERT INTO history (tenant, entity_id, attribute, dataset_id, observed_us, entity_type,
                     instance, number)
SELECT %s, u.entity_id, u.attribute, u.dataset_id, u.observed_us, u.entity_type,
       u.instance::jsonb, u.number
FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[],
            %b::float8[]) AS u(entity_id, attribute, dataset_id, observed_us, entity_type,
                               instance, number)
ON CONFLICT DO NOTHING
"""


def location_geojson(entity: dict) -> str | None:
    """GeoJSON text of the entity's ``location`` for the geometry column, or None.

    One instance gives its geometry; several (by ``datasetId``) give a
    GeometryCollection of them all.
    """
    attr = entity.get("location")
    if not attr:
        return None
    geometries = [i["value"] for i in attribute_instances(attr)
                  if isinstance(i.get("value"), dict) and "type" in i["value"]]
    if not geometries:
        return None
    if len(geometries) == 1:
        return orjson.dumps(geometries[0]).decode()
    return orjson.dumps({"type": "GeometryCollection", "geometries": geometries}).decode()


def _in_reading_order(doc: dict) -> dict:
    """``id``, ``type`` (and ``scope``) first, then the attributes by name.

    jsonb keeps object keys by length, then bytes; this restores the order people read.
    """
    head = {k: doc[k] for k in ("id", "type", "scope") if k in doc}
    head.update((k, doc[k]) for k in sorted(doc) if k not in head)
    return head


def _storable(entity_ids) -> list[str]:
    """The ids PostgreSQL can hold: text cannot contain U+0000, so an id with one was
    never stored and looking it up must find nothing (not fail with a DataError)."""
    return [i for i in entity_ids if "\x00" not in i]


def _creation_stripe(tenant: str, entity_id: str) -> int:
    return zlib.crc32(f"{tenant}\x1f{entity_id}".encode()) % _CREATE_STRIPES


class _PostgresTransaction(StoreTransaction):
    """Buffers writes; :meth:`flush` sends them in one statement per table."""

    def __init__(self, conn: psycopg.Connection, tenant: str):
        self.conn = conn
        self.tenant = tenant
        # what this transaction has read or written (None: does not exist), so that a
        # batch reads its ids once and each entity's step costs no query
        self._records: dict[str, StoredEntity | None] = {}
        self._puts: dict[str, StoredEntity] = {}
        self._deletes: set[str] = set()
        self._history: list[HistoryRow] = []
        self._stripes: set[int] = set()

    def read(self, entity_ids: list[str]) -> dict[str, StoredEntity]:
        if len(entity_ids) == 1 and entity_ids[0] in self._records:
            # the common case inside a batch: the id was read with the whole batch
            record = self._records[entity_ids[0]]
            return {} if record is None else {record.id: record}
        found = {i: r for i in entity_ids if (r := self._records.get(i)) is not None}
        missing = [i for i in dict.fromkeys(entity_ids) if i not in self._records]
        if not missing:
            return found
        found.update(self._select_for_update(missing))
        absent = [i for i in missing if i not in found]
        stripes = sorted({_creation_stripe(self.tenant, i) for i in absent} - self._stripes)
        if stripes:
            # another worker may be creating one of these ids: wait for it, then look again
            self.conn.execute("SELECT pg_advisory_xact_lock(%s, s) FROM unnest(%s::int[]) s",
                              (_LOCK_CLASS, stripes))
            self._stripes.update(stripes)
            found.update(self._select_for_update(absent))
        for entity_id in missing:
            self._records[entity_id] = found.get(entity_id)
        return found

    def _select_for_update(self, entity_ids: list[str]) -> dict[str, StoredEntity]:
        entity_ids = _storable(entity_ids)
        if not entity_ids:
            return {}
        rows = self.conn.execute(
            "SELECT id, doc, created_us, modified_us FROM entities "
            "WHERE tenant = %s AND id = ANY(%s) ORDER BY id FOR UPDATE",
            (self.tenant, entity_ids)).fetchall()
        return {entity_id: StoredEntity(_in_reading_order(doc), created, modified)
                for entity_id, doc, created, modified in rows}

    def put(self, record: StoredEntity, *, created: bool) -> None:
        self._records[record.id] = record
        self._puts[record.id] = record
        self._deletes.discard(record.id)

    def delete(self, entity_id: str) -> None:
        self._records[entity_id] = None
        self._puts.pop(entity_id, None)
        self._deletes.add(entity_id)

    def add_history(self, rows: list[HistoryRow]) -> None:
        self._history.extend(rows)

    def delete_history_rows(self, entity_id, attribute, dataset_id=None, observed_us=None):
        if not _storable([entity_id]):
            return 0
        sql = "DELETE FROM history WHERE tenant = %s AND entity_id = %s AND attribute = %s"
        params: list = [self.tenant, entity_id, attribute]
        if dataset_id is not None:
            sql += " AND dataset_id = %s"
            params.append(dataset_id)
        if observed_us is not None:
            sql += " AND observed_us = %s"
            params.append(observed_us)
        return self.conn.execute(sql, params).rowcount

    def flush(self) -> None:
        """Write the buffered deletes, entity upserts and history rows."""
        if self._deletes:
            self.conn.execute("DELETE FROM entities WHERE tenant = %s AND id = ANY(%s)",
                              (self.tenant, sorted(self._deletes)))
        puts = list(self._puts.values())
        for start in range(0, len(puts), _WRITE_CHUNK):
            chunk = puts[start:start + _WRITE_CHUNK]
            self.conn.execute(_UPSERT_ENTITIES, (
                self.tenant,
                [r.id for r in chunk],
                [orjson.dumps(entity_types(r.entity)).decode() for r in chunk],
                [orjson.dumps(r.entity).decode() for r in chunk],
                [r.created_us for r in chunk],
                [r.modified_us for r in chunk],
                [location_geojson(r.entity) for r in chunk]))
        rows = self._history
        for start in range(0, len(rows), _WRITE_CHUNK):
            chunk = rows[start:start + _WRITE_CHUNK]
            self.conn.execute(_INSERT_HISTORY, (
                self.tenant,
                [r.entity_id for r in chunk],
                [r.attribute for r in chunk],
                [r.dataset_id for r in chunk],
                [r.observed_us for r in chunk],
                [r.entity_type for r in chunk],
                [(r.encoded or orjson.dumps(r.instance)).decode() for r in chunk],
                [r.number for r in chunk]))
        self._puts.clear()
        self._deletes.clear()
        self._history = []


class PostgresStore(ContextStore):
    """Context store in PostgreSQL with PostGIS.

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/dbname``; the database must exist and the user
        must be allowed to create the PostGIS extension (or it must be there already).
    events : EventBus, optional
        Bus for entity events.
    min_connections, max_connections : int
        Size of the connection pool shared by this process's threads.

    Raises
    ------
    RuntimeError
        When the server cannot be reached or PostGIS is not installed on it.
    """

    backend = "postgresql"

    def __init__(self, url: str, events: EventBus | None = None, *,
                 min_connections: int = 1, max_connections: int = 10):
        super().__init__(events)
        self.url = url
        try:  # one direct attempt first: a wrong URL fails now, not after pool retries
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as error:
            raise RuntimeError(f"database URL {redact_url(url)!r}: cannot connect: "
                               f"{error}") from error
        self._pool = ConnectionPool(url, min_size=min_connections, max_size=max_connections,
                                    kwargs={"autocommit": True}, configure=_configure,
                                    open=False, name="cityos-store")
        try:
            self._pool.open(wait=True, timeout=10.0)
        except psycopg.Error as error:
            self._pool.close()
            raise RuntimeError(f"database URL {redact_url(url)!r}: cannot connect: "
                               f"{error}") from error
        try:
            self._create_schema()
        except BaseException:
            self._pool.close()
            raise

    def _create_schema(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            # several workers may open the same empty database at once
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, _SCHEMA_LOCK))
            try:
                conn.execute(SCHEMA)
            except psycopg.errors.FeatureNotSupported as error:
                raise RuntimeError(
                    f"PostGIS is not installed on the server of {redact_url(self.url)!r} "
                    f"(Debian: apt-get install postgresql-15-postgis-3): {error}") from error

    # ------------------------------------------------------------- primitives
    @contextmanager
    def transaction(self, tenant: str) -> Iterator[_PostgresTransaction]:
        with self._pool.connection() as conn, conn.transaction():
            tx = _PostgresTransaction(conn, tenant)
            yield tx
            tx.flush()

    def scan(self, tenant, *, types=None, ids=None, id_pattern=None, bbox=None):
        # id_pattern is left to the caller: PostgreSQL's regular expressions are not
        # Python's, and a prefilter that disagreed would drop matches
        if ids is not None:
            ids = _storable(ids)
            if not ids:
                return
        where = ["tenant = %s"]
        params: list = [tenant]
        if types:
            where.append("types && %s::text[]")
            params.append(list(types))
        if ids is not None:
            where.append("id = ANY(%s::text[])")
            params.append(list(ids))
        if bbox is not None:
            where.append("location && ST_MakeEnvelope(%s, %s, %s, %s, 4326)")
            params += [float(b) for b in bbox]
        # keyset pages: no connection is held between pages, and a caller that stops
        # after the first page (a small limit) fetches no more
        sql = ("SELECT id, doc, created_us, modified_us FROM entities WHERE "
               + " AND ".join(where) + " {after} ORDER BY id LIMIT %s")
        after: str | None = None
        while True:
            page_sql = sql.format(after="" if after is None else "AND id > %s")
            page_params = params + ([] if after is None else [after]) + [_SCAN_CHUNK]
            with self._pool.connection() as conn:
                rows = conn.execute(page_sql, page_params).fetchall()
            for _, doc, created, modified in rows:
                yield StoredEntity(_in_reading_order(doc), created, modified)
            if len(rows) < _SCAN_CHUNK:
                return
            after = rows[-1][0]

    def history(self, tenant, entity_id, attrs, start_us, end_us, last_n):
        if not _storable([entity_id]):
            return []
        # Walk the entity's series (attribute, dataset) with a loose index scan, then
        # read each series' time range (or its last N, newest first, LIMIT N) from the
        # unique index: no query reads rows of the entity outside the range asked for.
        params: dict = {"tenant": tenant, "entity": entity_id, "attrs": None,
                        "start": None, "end": None, "n": None}
        attr_filter = time_filter = newest_first = ""
        if attrs is not None:
            attr_filter = "AND attribute = ANY(%(attrs)s::text[])"
            params["attrs"] = list(attrs)
        if start_us is not None:
            time_filter += " AND observed_us >= %(start)s"
            params["start"] = int(start_us)
        if end_us is not None:
            time_filter += " AND observed_us < %(end)s"
            params["end"] = int(end_us)
        if last_n:
            newest_first = "DESC LIMIT %(n)s"
            params["n"] = int(last_n)
        sql = f"""
            WITH RECURSIVE series AS (
                (SELECT attribute, dataset_id FROM history
                 WHERE tenant = %(tenant)s AND entity_id = %(entity)s {attr_filter}
                 ORDER BY attribute, dataset_id LIMIT 1)
                UNION ALL
                SELECT after.attribute, after.dataset_id FROM series, LATERAL (
                    SELECT attribute, dataset_id FROM history
                    WHERE tenant = %(tenant)s AND entity_id = %(entity)s {attr_filter}
                      AND (attribute, dataset_id) > (series.attribute, series.dataset_id)
                    ORDER BY attribute, dataset_id LIMIT 1) AS after
            )
            SELECT s.attribute, s.dataset_id, h.observed_us, h.entity_type, h.instance,
                   h.number
            FROM series AS s, LATERAL (
                SELECT observed_us, entity_type, instance, number FROM history
                WHERE tenant = %(tenant)s AND entity_id = %(entity)s
                  AND attribute = s.attribute AND dataset_id = s.dataset_id {time_filter}
                ORDER BY observed_us {newest_first}) AS h
            ORDER BY s.attribute, s.dataset_id, h.observed_us"""
        with self._pool.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [HistoryRow(entity_id, etype, attribute, dataset, observed, instance, number)
                for attribute, dataset, observed, etype, instance, number in rows]

    def delete_history(self, tenant, entity_id):
        if not _storable([entity_id]):
            return 0
        with self._pool.connection() as conn:
            return conn.execute("DELETE FROM history WHERE tenant = %s AND entity_id = %s",
                                (tenant, entity_id)).rowcount

    def put_document(self, tenant, kind, key, doc):
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO documents (tenant, kind, key, doc, created_us) "
                "VALUES (%s, %s, %s, %s::jsonb, %s) ON CONFLICT (tenant, kind, key) "
                "DO UPDATE SET doc = EXCLUDED.doc",
                (tenant, kind, key, orjson.dumps(doc).decode(), to_micros(now_utc())))

    def get_document(self, tenant, kind, key):
        with self._pool.connection() as conn:
            row = conn.execute("SELECT doc FROM documents WHERE tenant = %s AND kind = %s "
                               "AND key = %s", (tenant, kind, key)).fetchone()
        return row[0] if row else None

    def list_documents(self, tenant, kind, limit=1000, offset=0, *, newest_first=False):
        order = "created_us DESC, key DESC" if newest_first else "created_us, key"
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT doc FROM documents WHERE tenant = %s AND kind = %s "
                f"ORDER BY {order} LIMIT %s OFFSET %s",
                (tenant, kind, int(limit), int(offset))).fetchall()
        return [r[0] for r in rows]

    def delete_document(self, tenant, kind, key):
        with self._pool.connection() as conn:
            return conn.execute(
                "DELETE FROM documents WHERE tenant = %s AND kind = %s AND key = %s",
                (tenant, kind, key)).rowcount > 0

    def tenants(self):
        # a loose index scan: one probe of the primary key per tenant, not per entity
        with self._pool.connection() as conn:
            rows = conn.execute(
                "WITH RECURSIVE t AS ("
                " SELECT min(tenant) AS tenant FROM entities"
                " UNION ALL"
                " SELECT (SELECT min(tenant) FROM entities WHERE tenant > t.tenant)"
                " FROM t WHERE t.tenant IS NOT NULL)"
                " SELECT tenant FROM t WHERE tenant IS NOT NULL").fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self._pool.close()


def _configure(conn: psycopg.Connection) -> None:
    set_json_loads(orjson.loads, conn)  # jsonb columns decode with orjson: faster
    # The planner over-estimates the recursive series walk of history() and would JIT-
    # compile it: ~10 ms of compiling for a query that runs in a few. Short queries only.
    conn.execute("SET jit = off")
