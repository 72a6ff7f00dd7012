"""Storage: one small wrapper over sqlite3 (WAL) and psycopg 3 so the rest of the code writes
SQL once, with `?` placeholders, and the same schema on both; migrations run at connect."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from basket_service.config import Settings

Row = tuple[Any, ...]

# Each migration is a list of statements; {pk}/{big} differ per dialect, nothing else does.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE products (
            code TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            price {big} NOT NULL,
            discount_percent INTEGER NOT NULL,
            loaded_at TEXT NOT NULL)""",
        """CREATE TABLE baskets (
            id {big} PRIMARY KEY,
            in_use INTEGER NOT NULL DEFAULT 0,
            session_id {big},
            online INTEGER,
            availability_at TEXT,
            cart TEXT NOT NULL DEFAULT '{{}}',
            cart_digest TEXT,
            total {big} NOT NULL DEFAULT 0,
            total_sent INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT)""",
        """CREATE TABLE sessions (
            id {pk},
            basket {big} NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT)""",
        """CREATE TABLE history (
            id {pk},
            basket {big} NOT NULL,
            session_id {big},
            received_at TEXT NOT NULL,
            cart TEXT NOT NULL,
            digest TEXT NOT NULL,
            total {big} NOT NULL,
            unknown TEXT NOT NULL,
            via TEXT NOT NULL)""",
        "CREATE INDEX history_basket ON history (basket, session_id)",
        """CREATE TABLE inbox (
            client_id TEXT NOT NULL,
            mid INTEGER NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (client_id, mid))""",
        """CREATE TABLE receipts (
            id {pk},
            basket {big} NOT NULL,
            session_id {big},
            created_at TEXT NOT NULL,
            total {big} NOT NULL,
            unknown TEXT NOT NULL)""",
        """CREATE TABLE receipt_lines (
            receipt_id {big} NOT NULL REFERENCES receipts (id),
            line_no INTEGER NOT NULL,
            code TEXT NOT NULL,
            name TEXT NOT NULL,
            count INTEGER NOT NULL,
            unit_price {big} NOT NULL,
            amount {big} NOT NULL,
            known INTEGER NOT NULL,
            PRIMARY KEY (receipt_id, line_no))""",
        """CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value {big} NOT NULL)""",
        "@append_only",
    ],
    [  # 2: fleet health (issue 14). `prev_counters`: the previous report's counters.
        """CREATE TABLE health (
            basket {big} PRIMARY KEY,
            received_at TEXT NOT NULL,
            doc TEXT NOT NULL,
            prev_counters TEXT)""",
        """CREATE TABLE health_events (
            id {pk},
            basket {big} NOT NULL,
            at TEXT NOT NULL,
            what TEXT NOT NULL,
            old TEXT,
            new TEXT)""",
        "CREATE INDEX health_events_basket ON health_events (basket, id)",
        """CREATE TABLE basket_config (
            basket {big} PRIMARY KEY,
            rev INTEGER NOT NULL,
            doc TEXT NOT NULL,
            set_at TEXT NOT NULL)""",
    ],
    [  # 3: updates over the air (issue 15): the release last pushed to each basket.
        """CREATE TABLE ota_pushes (
            basket {big} PRIMARY KEY,
            version TEXT NOT NULL,
            manifest TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            pushed_at TEXT NOT NULL)""",
    ],
    [  # 4: stock and sales (issue 16). The database owns stock once a code is imported; a
        # checkout moves it in the receipt's transaction. `payment_id`: a checkout is billed
        # once per payment; `receipt_key`: the shopper's link to the receipt. NULLs are
        # distinct in a unique index on both back ends (staff checkouts have no payment).
        "ALTER TABLE products ADD COLUMN stock {big} NOT NULL DEFAULT 0",
        "ALTER TABLE products ADD COLUMN sales {big} NOT NULL DEFAULT 0",
        "ALTER TABLE products ADD COLUMN category TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE products ADD COLUMN image_url TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE receipts ADD COLUMN payment_id TEXT",
        "ALTER TABLE receipts ADD COLUMN receipt_key TEXT",
        "CREATE UNIQUE INDEX receipts_payment ON receipts (payment_id)",
        "CREATE UNIQUE INDEX receipts_key ON receipts (receipt_key)",
    ],
    [  # 5: the shopper's pairing (issue 16, docs/shopper.md): pairing.PairState as JSON, and
        # what the basket's display was last sent and what the last phone may still see.
        """CREATE TABLE pairing (
            basket {big} PRIMARY KEY,
            state TEXT NOT NULL,
            display TEXT NOT NULL DEFAULT '{{}}')""",
    ],
]

SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER history_no_update BEFORE UPDATE ON history
       BEGIN SELECT RAISE(ABORT, 'history is append-only'); END""",
    """CREATE TRIGGER history_no_delete BEFORE DELETE ON history
       BEGIN SELECT RAISE(ABORT, 'history is append-only'); END""",
]
PG_APPEND_ONLY = [
    """CREATE FUNCTION history_append_only() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN RAISE EXCEPTION 'history is append-only'; END $$""",
    """CREATE TRIGGER history_no_change BEFORE UPDATE OR DELETE ON history
       FOR EACH STATEMENT EXECUTE FUNCTION history_append_only()""",
]
DIALECT = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "big": "INTEGER"},
    "postgresql": {"pk": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "big": "BIGINT"},
}


class DatabaseError(RuntimeError):
    """The database cannot be reached or used; the message is safe to show."""


def _errors(operational: bool) -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [DatabaseError]
    errors.append(sqlite3.OperationalError if operational else sqlite3.Error)
    try:
        import psycopg

        errors.append(psycopg.OperationalError if operational else psycopg.Error)
    except ImportError:
        pass
    return tuple(errors)


# Every error a database operation can raise on either back end (a lost connection, a full
# disk, a locked or broken file, a constraint): the command line and the dashboard report them
# in one line. The service retries only on DB_LOST, the operational ones (a lost connection, a
# locked or full database): an error in the data itself would fail again on every retry.
DB_ERRORS: tuple[type[BaseException], ...] = _errors(False)
DB_LOST: tuple[type[BaseException], ...] = _errors(True)

# SQLite's write-ahead log: a checkpoint that restarts it cuts the file back to this size
# (PRAGMA journal_size_limit), and the service's checkpointer forces a TRUNCATE checkpoint once
# it is larger than WAL_TRUNCATE_BYTES (docs/service.md, "WAL").
WAL_SIZE_LIMIT = 8 * 2**20
WAL_TRUNCATE_BYTES = 32 * 2**20


def first_line(e: BaseException) -> str:
    """An error's first line, or its class name: safe for a one-line report."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Tx:
    """One open transaction: `?` placeholders on both back ends."""

    def __init__(self, cur: Any, backend: str) -> None:
        self.cur = cur
        self.backend = backend

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.backend == "postgresql" else sql

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cur.execute(self._sql(sql), tuple(params))
        return int(self.cur.rowcount)

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """One statement for each parameter set (psycopg pipelines them)."""
        if params:
            self.cur.executemany(self._sql(sql), [tuple(p) for p in params])

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self.cur.execute(self._sql(sql), tuple(params))
        row = self.cur.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.cur.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in self.cur.fetchall()]

    def lock_basket(self, basket: int) -> Row:
        """Creates the basket's row if needed and locks it until the transaction ends
        (SQLite: the whole database is already locked by BEGIN IMMEDIATE)."""
        lock = " FOR UPDATE" if self.backend == "postgresql" else ""
        sql = ("SELECT in_use, session_id, cart, cart_digest, total, total_sent FROM baskets"
               " WHERE id = ?" + lock)
        row = self.one(sql, (basket,))
        if row is None:  # first time: create it (another process may just have done so)
            self.run("INSERT INTO baskets (id) VALUES (?) ON CONFLICT (id) DO NOTHING", (basket,))
            row = self.one(sql, (basket,))
        assert row is not None
        return row

    def bump(self, counter: str, by: int = 1) -> None:
        self.run("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name)"
                 " DO UPDATE SET value = counters.value + excluded.value", (counter, by))


class Database:
    def __init__(self, settings: Settings) -> None:
        self.backend = settings.backend
        self.where = settings.describe_db()
        self._settings = settings
        self.conn: Any = None
        self._own_checkpoints = False
        self.connect()

    @property
    def settings(self) -> Settings:
        """The settings this database was opened with."""
        return self._settings

    def connect(self) -> None:
        self.close()
        s = self._settings
        if self.backend == "postgresql":
            try:
                import psycopg
            except ImportError:
                raise DatabaseError("DATABASE_URL selects PostgreSQL but psycopg is not "
                                    "installed (pip install -r requirements-service.txt)")
            try:
                self.conn = psycopg.connect(s.database_url or "", autocommit=True,
                                            connect_timeout=10)
            except psycopg.Error as e:
                raise DatabaseError("cannot connect to %s: %s" % (self.where, first_line(e)))
        else:
            try:
                s.db_path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(str(s.db_path), isolation_level=None, timeout=30,
                                            check_same_thread=False)
                self.conn.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a COMMIT has written the transaction to the WAL file (the
                # OS holds it) before it returns, so a killed or restarted process loses
                # nothing committed; only the host crashing may undo the last ones. FULL also
                # waits for the disk on every COMMIT (docs/service.md).
                self.conn.execute("PRAGMA synchronous=%s" % s.db_sync.upper())
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.execute("PRAGMA journal_size_limit=%d" % WAL_SIZE_LIMIT)
                if self._own_checkpoints:
                    self.conn.execute("PRAGMA wal_autocheckpoint=0")
            except (OSError, sqlite3.Error) as e:
                raise DatabaseError("cannot open BASKET_DB %s: %s" % (s.db_path, e))

    def checkpoint_elsewhere(self) -> None:
        """SQLite: this connection's COMMITs no longer copy the WAL back into the database
        file (an automatic checkpoint every 1,000 pages, with its fsyncs, inside whichever
        COMMIT crosses the line); the caller runs checkpoint() from another thread instead."""
        if self.backend == "sqlite":
            self._own_checkpoints = True
            self.conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpointer(self) -> Any:
        """A separate SQLite connection for checkpoint() (synchronous=FULL: a checkpoint
        syncs the WAL before it copies it and the database file after)."""
        conn = sqlite3.connect(str(self._settings.db_path), isolation_level=None, timeout=30,
                               check_same_thread=False)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA journal_size_limit=%d" % WAL_SIZE_LIMIT)
        return conn

    def wal_bytes(self) -> int:
        """SQLite: the size of the write-ahead log file now (0 when there is none)."""
        try:
            return Path(str(self._settings.db_path) + "-wal").stat().st_size
        except OSError:
            return 0

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a broken link must not raise
                pass
            self.conn = None

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        if self.backend == "postgresql":
            with self.conn.transaction(), self.conn.cursor() as cur:
                yield Tx(cur, self.backend)
            return
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(cur, self.backend)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only transaction: one consistent view that, on SQLite, takes no write lock
        (a deferred BEGIN under WAL), so readers such as the dashboard never hold up the
        service's writes."""
        if self.backend == "postgresql":
            with self.conn.transaction(), self.conn.cursor() as cur:
                yield Tx(cur, self.backend)
            return
        cur = self.conn.cursor()
        cur.execute("BEGIN")
        try:
            yield Tx(cur, self.backend)
        except BaseException:
            with suppress(sqlite3.Error):  # keep the original error, not the rollback's
                cur.execute("ROLLBACK")
            raise
        cur.execute("ROLLBACK")

    def migrate(self) -> int:
        """Brings the schema up to date; safe when several processes start at once."""
        with self.tx() as t:
            if self.backend == "postgresql":
                t.run("SELECT pg_advisory_xact_lock(724253)")
            t.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = _version(t)
            for n, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for stmt in statements:
                    for sql in self._expand(stmt):
                        t.run(sql)
                t.run("DELETE FROM schema_version")
                t.run("INSERT INTO schema_version (version) VALUES (?)", (n,))
            return len(MIGRATIONS)

    def _expand(self, stmt: str) -> list[str]:
        if stmt == "@append_only":
            return PG_APPEND_ONLY if self.backend == "postgresql" else SQLITE_APPEND_ONLY
        return [stmt.format(**DIALECT[self.backend])]


def _version(t: Tx) -> int:
    row = t.one("SELECT version FROM schema_version")
    return int(row[0]) if row else 0


def open_db(settings: Settings) -> Database:
    db = Database(settings)
    db.migrate()
    return db
