"""The embedded default backend: one SQLite file in WAL mode.

Entities are JSON documents keyed by (tenant, id); an R*Tree holds the lon/lat box
of each entity's ``location`` for the spatial prefilter (exact predicates run in
Shapely, in :mod:`cityos.core.geo`). History is a ``WITHOUT ROWID`` table clustered on
(tenant, entity, attribute, dataset, instant), so a time-range or lastN query for one
attribute is one index range scan.

Writes are serialised by one lock (SQLite has a single writer anyway) and run as
``BEGIN IMMEDIATE`` transactions; readers use their own per-thread connections and
never block the writer (WAL). ``synchronous=NORMAL`` keeps every committed
transaction through a process crash (SIGKILL); set ``CITYOS_SQLITE_SYNCHRONOUS=FULL``
to survive power loss as well, at the cost of an fsync per commit.

Checkpoints (copying the WAL back into the database file, with its fsyncs) run in a
background thread of the store, a passive checkpoint shortly after writes, instead of
inside the commit that happens to cross SQLite's automatic threshold: with the write
lock held, that commit (a batch of observations) cost several times its own writes.
The automatic checkpoint stays on, at a higher threshold, as a backstop.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import orjson

from cityos.core.entities import attribute_instances, entity_types
from cityos.core.events import EventBus
from cityos.core.store.base import ContextStore, HistoryRow, StoredEntity, StoreTransaction
from cityos.core.timefmt import now_utc, to_micros

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    pk INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc BLOB NOT NULL,
    created_us INTEGER NOT NULL,
    modified_us INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
CREATE TABLE IF NOT EXISTS entity_types (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    pk INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entity_types_pk ON entity_types (pk);
CREATE VIRTUAL TABLE IF NOT EXISTS entity_geo USING rtree (pk, min_lon, max_lon, min_lat, max_lat);
CREATE TABLE IF NOT EXISTS history (
    tenant TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    attribute TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    observed_us INTEGER NOT NULL,
    entity_type TEXT NOT NULL,
    instance BLOB NOT NULL,
    number REAL,
    PRIMARY KEY (tenant, entity_id, attribute, dataset_id, observed_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_series (
    tenant TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    attribute TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    PRIMARY KEY (tenant, entity_id, attribute, dataset_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    doc BLOB NOT NULL,
    created_us INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, key)
) WITHOUT ROWID;
"""

_CHUNK = 500  # stays well under SQLite's bound-parameter limit
#: WAL pages at which a committing connection checkpoints itself (SQLite's default is
#: 1,000); the background checkpointer normally runs long before.
_AUTOCHECKPOINT_PAGES = 8000
#: The background checkpointer waits this long after a write before it checkpoints, so
#: that a run of writes is copied back once.
_CHECKPOINT_DELAY_S = 0.2


def location_bounds(entity: dict) -> tuple[float, float, float, float] | None:
    """Lon/lat box (min_lon, min_lat, max_lon, max_lat) of the entity's ``location``."""
    attr = entity.get("location")
    if not attr:
        return None
    boxes = []
    for instance in attribute_instances(attr):
        value = instance.get("value")
        if isinstance(value, dict) and "coordinates" in value:
            boxes.append(_coordinate_bounds(value["coordinates"]))
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _coordinate_bounds(coords) -> tuple[float, float, float, float] | None:
    xs: list[float] = []
    ys: list[float] = []
    stack = [coords]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)) and item and isinstance(item[0], (int, float)):
            xs.append(float(item[0]))
            ys.append(float(item[1]))
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)


@contextmanager
def _file_lock(path: str | None) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (nothing when None)."""
    if path is None:
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _SqliteTransaction(StoreTransaction):
    def __init__(self, conn: sqlite3.Connection, tenant: str):
        self.conn = conn
        self.tenant = tenant
        # per entity read or written: pk, types, location box, and the "type" value and
        # "location" attribute object they were derived from
        self._known: dict[str, tuple[int, list[str], tuple | None, object, object]] = {}
        # what this transaction has read or written, None for "does not exist": a batch
        # reads all its ids at once and each entity's step then costs no query
        self._records: dict[str, StoredEntity | None] = {}
        self._history: list[tuple] = []
        # documents of existing entities to rewrite, by pk (the last write of an entity
        # wins), sent at flush in one executemany
        self._updates: dict[int, StoredEntity] = {}

    def read(self, entity_ids: list[str]) -> dict[str, StoredEntity]:
        if len(entity_ids) == 1 and entity_ids[0] in self._records:
            # the common case inside a batch: the id was read with the whole batch
            record = self._records[entity_ids[0]]
            return {} if record is None else {record.id: record}
        found = {i: self._records[i] for i in entity_ids
                 if i in self._records and self._records[i] is not None}
        missing = [i for i in dict.fromkeys(entity_ids) if i not in self._records]
        for entity_id in missing:
            self._records[entity_id] = None
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT pk, id, doc, created_us, modified_us FROM entities "
                f"WHERE tenant = ? AND id IN ({marks})", [self.tenant, *chunk])
            for pk, entity_id, doc, created, modified in rows:
                entity = orjson.loads(doc)
                self._known[entity_id] = (pk, entity_types(entity), location_bounds(entity),
                                          entity.get("type"), entity.get("location"))
                found[entity_id] = self._records[entity_id] = StoredEntity(entity, created,
                                                                           modified)
        return found

    def put(self, record: StoredEntity, *, created: bool) -> None:
        entity = record.entity
        known = None if created else self._known.get(record.id)
        if known is None and not created:
            self.read([record.id])
            known = self._known.get(record.id)
        location = entity.get("location")
        if known is not None and entity.get("type") == known[3] and location is known[4] \
                and (location is None or type(location) is dict):
            # the common update: same types, location untouched (a merge keeps the
            # stored attribute object; a changed instance is always a new object), so
            # neither index row changes
            self._updates[known[0]] = record
            self._records[record.id] = record
            return
        types = entity_types(entity)
        bounds = location_bounds(entity)
        if known is None:
            pk = self.conn.execute(
                "INSERT INTO entities (tenant, id, doc, created_us, modified_us) "
                "VALUES (?, ?, ?, ?, ?) RETURNING pk",
                (self.tenant, record.id, orjson.dumps(entity), record.created_us,
                 record.modified_us)).fetchone()[0]
            old_types, old_bounds = [], None
        else:
            pk, old_types, old_bounds = known[:3]
            self._updates[pk] = record
        if types != old_types:
            self.conn.execute("DELETE FROM entity_types WHERE pk = ?", (pk,))
            self.conn.executemany(
                "INSERT INTO entity_types (tenant, type, id, pk) VALUES (?, ?, ?, ?)",
                [(self.tenant, t, record.id, pk) for t in types])
        if bounds != old_bounds:
            self.conn.execute("DELETE FROM entity_geo WHERE pk = ?", (pk,))
            if bounds is not None:
                self.conn.execute("INSERT INTO entity_geo VALUES (?, ?, ?, ?, ?)",
                                  (pk, bounds[0], bounds[2], bounds[1], bounds[3]))
        self._known[record.id] = (pk, types, bounds, entity.get("type"), entity.get("location"))
        self._records[record.id] = record

    def delete(self, entity_id: str) -> None:
        self._write_updates()
        row = self.conn.execute("SELECT pk FROM entities WHERE tenant = ? AND id = ?",
                                (self.tenant, entity_id)).fetchone()
        self._records[entity_id] = None
        if row is None:
            return
        for table in ("entities", "entity_types", "entity_geo"):
            self.conn.execute(f"DELETE FROM {table} WHERE pk = ?", (row[0],))
        self._known.pop(entity_id, None)

    def add_history(self, rows: list[HistoryRow]) -> None:
        tenant = self.tenant
        dumps = orjson.dumps
        self._history += [(tenant, r.entity_id, r.attribute, r.dataset_id, r.observed_us,
                           r.entity_type, r.encoded or dumps(r.instance), r.number)
                          for r in rows]

    def delete_history_rows(self, entity_id, attribute, dataset_id=None, observed_us=None):
        sql = "DELETE FROM history WHERE tenant = ? AND entity_id = ? AND attribute = ?"
        params: list = [self.tenant, entity_id, attribute]
        if dataset_id is not None:
            sql += " AND dataset_id = ?"
            params.append(dataset_id)
        if observed_us is not None:
            sql += " AND observed_us = ?"
            params.append(observed_us)
        return self.conn.execute(sql, params).rowcount

    def _write_updates(self) -> None:
        if self._updates:
            self.conn.executemany(
                "UPDATE entities SET doc = ?, modified_us = ? WHERE pk = ?",
                [(orjson.dumps(r.entity), r.modified_us, pk) for pk, r in self._updates.items()])
            self._updates.clear()

    def flush(self) -> None:
        self._write_updates()
        if not self._history:
            return
        self.conn.executemany(
            "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._history)
        self.conn.executemany(
            "INSERT OR IGNORE INTO history_series VALUES (?, ?, ?, ?)",
            {(r[0], r[1], r[2], r[3]) for r in self._history})
        self._history.clear()


class _Checkpointer:
    """Passive WAL checkpoints in a daemon thread with its own connection.

    :meth:`wrote` (after each commit) wakes it; it waits :data:`_CHECKPOINT_DELAY_S`
    and checkpoints what is in the WAL. A passive checkpoint never blocks writers or
    readers; what it cannot copy now (pages a reader still needs) is copied next time.
    """

    def __init__(self, path: str):
        self.path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        conn = None
        try:
            while not self._stop.is_set():
                self._wake.wait()
                if self._stop.wait(_CHECKPOINT_DELAY_S):
                    break
                self._wake.clear()
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, isolation_level=None,
                                               check_same_thread=False, timeout=5.0)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy or gone: the next write tries again
                    pass
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        """Tell the thread to end (it does within a moment)."""
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and wait for it."""
        self.stop()
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)


class SqliteStore(ContextStore):
    """Context store in one SQLite file.

    Parameters
    ----------
    path : str
        File path, or ``:memory:`` for a private in-memory store (tests, tools).
    events : EventBus, optional
        Bus for entity events.
    """

    backend = "sqlite"

    def __init__(self, path: str, events: EventBus | None = None):
        super().__init__(events)
        self.path = path
        self._memory = path in ("", ":memory:")
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._synchronous = os.environ.get("CITYOS_SQLITE_SYNCHRONOUS", "NORMAL").upper()
        if not self._memory and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self._shared = self._connect() if self._memory else None
        conn = self._conn()
        with _file_lock(None if self._memory else path + ".lock"):
            conn.executescript(SCHEMA)
        self._checkpointer = None if self._memory else _Checkpointer(path)
        if self._checkpointer is not None:  # a store dropped without close() stops it too
            weakref.finalize(self, self._checkpointer.stop)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        # switching a new file to WAL takes an exclusive lock that busy_timeout does not
        # cover: serialise it between processes opening the same file at once
        with _file_lock(None if self._memory else self.path + ".lock"):
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
        conn.execute("PRAGMA mmap_size=268435456")
        if not self._memory:
            conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._shared is not None:
            return self._shared
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        # an in-memory store has one connection shared by all threads: serialise
        if self._shared is not None:
            with self._write_lock:
                yield self._shared
        else:
            yield self._conn()

    @contextmanager
    def transaction(self, tenant: str) -> Iterator[_SqliteTransaction]:
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            tx = _SqliteTransaction(conn, tenant)
            try:
                yield tx
                tx.flush()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if self._checkpointer is not None:
            self._checkpointer.wrote()

    def scan(self, tenant, *, types=None, ids=None, id_pattern=None, bbox=None):
        where = ["e.tenant = ?"]
        params: list = [tenant]
        if bbox is not None:
            # the R*Tree drives (CROSS JOIN fixes the order): left to itself the planner
            # walks every entity of the tenant and probes the tree once per entity.
            # With ids the id index drives instead.
            join = "JOIN" if ids is not None else "CROSS JOIN"
            sql = [f"SELECT e.doc, e.created_us, e.modified_us FROM entity_geo g "
                   f"{join} entities e ON e.pk = g.pk"]
            where.insert(0, "g.max_lon >= ? AND g.min_lon <= ? AND g.max_lat >= ? "
                            "AND g.min_lat <= ?")
            params[:0] = [bbox[0], bbox[2], bbox[1], bbox[3]]
        else:
            sql = ["SELECT e.doc, e.created_us, e.modified_us FROM entities e"]
        if types:
            marks = ",".join("?" * len(types))
            if bbox is not None or ids is not None:
                # few candidates: probe each one's types rather than list every entity
                # of the type first
                where.append(f"EXISTS (SELECT 1 FROM entity_types t WHERE t.pk = e.pk "
                             f"AND t.tenant = ? AND t.type IN ({marks}))")
            else:
                where.append(f"e.pk IN (SELECT pk FROM entity_types WHERE tenant = ? "
                             f"AND type IN ({marks}))")
            params += [tenant, *types]
        if ids is not None:
            if not ids:
                return
            if len(ids) > _CHUNK:
                yield from self._scan_many_ids(tenant, types, ids, id_pattern, bbox)
                return
            where.append(f"e.id IN ({','.join('?' * len(ids))})")
            params += list(ids)
        query = " ".join(sql) + " WHERE " + " AND ".join(where) + " ORDER BY e.id"
        with self._reading() as conn:
            rows = conn.execute(query, params).fetchall() if self._shared is not None \
                else conn.execute(query, params)
            for doc, created, modified in rows:
                yield StoredEntity(orjson.loads(doc), created, modified)

    def _scan_many_ids(self, tenant, types, ids, id_pattern, bbox):
        records = []
        for start in range(0, len(ids), _CHUNK):
            records += self.scan(tenant, types=types, ids=ids[start:start + _CHUNK],
                                 id_pattern=id_pattern, bbox=bbox)
        yield from sorted(records, key=lambda r: r.id)

    def history(self, tenant, entity_id, attrs, start_us, end_us, last_n):
        with self._reading() as conn:
            series = conn.execute(
                "SELECT attribute, dataset_id FROM history_series "
                "WHERE tenant = ? AND entity_id = ? ORDER BY attribute, dataset_id",
                (tenant, entity_id)).fetchall()
            rows: list[HistoryRow] = []
            for attribute, dataset in series:
                if attrs is not None and attribute not in attrs:
                    continue
                sql = ("SELECT observed_us, entity_type, instance, number FROM history "
                       "WHERE tenant = ? AND entity_id = ? AND attribute = ? "
                       "AND dataset_id = ?")
                params: list = [tenant, entity_id, attribute, dataset]
                if start_us is not None:
                    sql += " AND observed_us >= ?"
                    params.append(start_us)
                if end_us is not None:
                    sql += " AND observed_us < ?"
                    params.append(end_us)
                if last_n:
                    sql += " ORDER BY observed_us DESC LIMIT ?"
                    params.append(int(last_n))
                else:
                    sql += " ORDER BY observed_us"
                found = conn.execute(sql, params).fetchall()
                if last_n:
                    found.reverse()
                rows += [HistoryRow(entity_id, etype, attribute, dataset, observed,
                                    orjson.loads(instance), number)
                         for observed, etype, instance, number in found]
        return rows

    def delete_history(self, tenant, entity_id):
        with self.transaction(tenant) as tx:
            removed = tx.conn.execute("DELETE FROM history WHERE tenant = ? AND entity_id = ?",
                                      (tenant, entity_id)).rowcount
            tx.conn.execute("DELETE FROM history_series WHERE tenant = ? AND entity_id = ?",
                            (tenant, entity_id))
        return removed

    def put_document(self, tenant, kind, key, doc):
        with self._write_lock:
            self._conn().execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, kind, key) "
                "DO UPDATE SET doc = excluded.doc",
                (tenant, kind, key, orjson.dumps(doc), to_micros(now_utc())))

    def get_document(self, tenant, kind, key):
        with self._reading() as conn:
            row = conn.execute("SELECT doc FROM documents WHERE tenant = ? AND kind = ? "
                               "AND key = ?", (tenant, kind, key)).fetchone()
        return orjson.loads(row[0]) if row else None

    def list_documents(self, tenant, kind, limit=1000, offset=0, *, newest_first=False):
        order = "created_us DESC, key DESC" if newest_first else "created_us, key"
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT doc FROM documents WHERE tenant = ? AND kind = ? "
                f"ORDER BY {order} LIMIT ? OFFSET ?",
                (tenant, kind, limit, offset)).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def delete_document(self, tenant, kind, key):
        with self._write_lock:
            cursor = self._conn().execute(
                "DELETE FROM documents WHERE tenant = ? AND kind = ? AND key = ?",
                (tenant, kind, key))
        return cursor.rowcount > 0

    def tenants(self):
        with self._reading() as conn:
            return [r[0] for r in conn.execute(
                "SELECT DISTINCT tenant FROM entities ORDER BY tenant")]

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # closed from another thread already
                    pass
            self._connections.clear()
        self._local = threading.local()
