"""SQLite backend for the key-value interface (stdlib ``sqlite3``).

One table ``kv(k BLOB NOT NULL UNIQUE, v BLOB NOT NULL)`` in WAL mode: its key index is walked for a point
read or a range over a partition prefix, and each row is then fetched by rowid. Connections run in autocommit mode and transactions are
explicit (``BEGIN IMMEDIATE``: the write lock is taken up front, so a transaction never fails midway on lock
upgrade); nested ``transaction()`` calls on one thread become SAVEPOINTs and only the outermost commit is
durable.

Durability: an outermost commit is durable before anyone is told it happened, in one of two ways.
``synchronous=FULL`` (``group_commit=False``) fsyncs the WAL inside every COMMIT. With ``group_commit=True``
connections run ``synchronous=NORMAL`` (COMMIT writes the WAL frames but does not fsync) and
:meth:`SqliteKV.sync` fsyncs the WAL for every commit made before it started; the server answers a request
only after a ``sync`` that started after the request's last observed commit (``commit_seq``), so many
concurrent writes share one fsync while an acknowledged write still survives power loss. Checkpoints under
NORMAL fsync the WAL before copying it into the database, so a frame is never lost to a checkpoint either.
Measured on the development container (virtio disk, 2 cores, 200-byte rows): a committed one-row
transaction costs ~220-380 µs under FULL against ~14 µs under NORMAL, and one fsync costs about what a
FULL commit does, so N concurrent writers pay one fsync instead of N.
``benchmarks/sqlite_commits.py`` repeats the measurement.

Pages stay at SQLite's 4 KiB: 16 KiB pages were measured (2,000 × 1 KB items, 20-item partitions) to
grow the file by 60 % with no throughput gain. (Tree leaf size is the item store's: ``ITEM_LEAF_BYTES``.)

Checkpoints: a commit that leaves the WAL at ``wal_pages`` frames or more copies them into the database (SQLite's
automatic checkpoint, inside that COMMIT, while this process still holds the store's write lock and, with
workers, the writer flock: no other writer appends meanwhile, so unless a reader holds frames back the checkpoint
copies them all and the next write restarts the WAL from its start; it stays bounded, see
``tests/storage/test_wal_bound.py``). A page rewritten many times between two checkpoints is copied once, so a
larger WAL copies fewer pages: at 4,096 frames (16 MiB) instead of SQLite's 1,000, PutItem on the bench's table
(2,000 items, 2.5 MB) read 6.2 → 1.8 KB and wrote 21.0 → 16.6 KB per request (benchmarks/RESULTS.md,
2026-12-03 h-put). Recovery after a crash reads the WAL once, ~16 MiB at most.

Table: a rowid table plus the key index, not a WITHOUT ROWID table clustered by key (stores written before
2026-12-03 have that; ``sqlite_table.ensure_table`` moves them over at open, in one transaction, leaving the old table's
pages free in the file for later writes). In a WITHOUT ROWID table the row is its own index key, and SQLite
compares a search key with a cell whose row spills onto overflow pages (every tree node over ~1 KB) by copying
the whole row out first: every step of every seek copied a node. The key index holds only keys. Measured
(``benchmarks/irquiet.py``, 8 KiB leaves): instructions in ``sqlite3_step`` per PutItem ~105 k → 51 k, GetItem
~43 k → 20 k, 20-item Query ~80 k → 42 k (benchmarks/RESULTS.md, 2026-12-03 h-put).

Layout: one file per data directory, not per table. A DynamoDB write (TransactWriteItems across tables,
an item plus its index entries and stream record) must be one atomic store transaction, which SQLite only
gives within one file; and WAL commits cost one fsync whatever the table count, so per-table files would
buy nothing but more open handles.

Connections: a small pool of identical connections, handed out last-in first-out. A write transaction or a
read snapshot holds one connection for its whole block; a read outside both borrows one per statement (or
per page of a range). Reads outside a transaction see committed data, plus, from the thread inside a write
transaction, that transaction's writes. Ranges are fetched in pages, re-seeking after the last key, so an
open iterator never pins a statement and a caller may write while it iterates.

Why one pool handed out last-in first-out, not a writer connection plus a reader connection: when a connection
starts a read transaction and the WAL changed since its previous one, SQLite drops that connection's whole
page cache, unless it made the change itself. A dedicated reader thus lost its cache after every write and
re-read each node's pages, mostly WAL frames by ``pread``. Measured: 12 KB rows and one write per five reads
cost ~100 µs per read on a reader against ~45 µs on the writing connection; the service's 70/20/10
get/put/query mix made ~4.3 more ``pread`` calls and ~4 % more instructions per request than reads on the
writing connection, and the HTTP bench's mixed workload lost ~15 %. The server runs every handler on one
thread, so LIFO keeps it on one connection whose cache stays warm for reads and writes alike (the same mix:
~1.5 % more instructions than plain reads without a snapshot, no extra ``pread``). Another connection opens
only when another thread needs one at the same moment (an index backfill, a test's writer threads), so a
snapshot never waits for a write transaction and a write never waits for a snapshot.

Read snapshots (:meth:`SqliteKV.snapshot`, used by Query, Scan, BatchGetItem, TransactGetItems and PartiQL
SELECT, and GetItem: its descent is several reads) are a deferred ``BEGIN`` on the borrowed connection:
from the block's first read on, WAL serves it one committed state, so every read of the block agrees (a TransactGet sees one snapshot), and no
write lock is taken, so writers on other threads or in other processes on the same file commit freely. A
snapshot opened inside this thread's write transaction reads through that transaction (and sees its
writes). ``":memory:"`` and read-only stores have a pool of one connection (a second ``:memory:``
connection would be another database): there a snapshot waits for another thread's transaction to end.

Durability is unchanged by snapshots: a snapshot sees only committed data, and every commit this process
made is counted in ``commit_seq`` before its ``transaction()`` returns; the server (one thread) reads
``commit_seq`` after the handler, so the group-commit wait covers everything the snapshot could have seen.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator

from dynavault.errors import StartupError
from dynavault.storage.kv.base import check_key, check_value
from dynavault.storage.kv.sqlite_table import ensure_table, paged_range, pair
from dynavault.storage.sealed import CatalogRecord, Sealed

__all__ = ["PinnedSnapshot", "SqliteKV", "SqliteSnapshot", "SqliteTransaction"]

MMAP_BYTES = 2**31 - 2**16
#: connections a file-backed store opens at most; further concurrent users wait for one to come back
POOL_SIZE = 8
#: WAL frames after which a commit checkpoints them into the database (SQLite's wal_autocheckpoint; module doc)
WAL_PAGES = 4096


class _Conn(sqlite3.Connection):
    """A connection with one cursor of its own for every statement: ``Connection.execute`` makes and drops a
    cursor per call (~1.4k instructions of a ~18k point read). Every statement here is fetched whole before the
    next, so one cursor serves them all."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.cur = self.cursor()


class _ThreadState(threading.local):
    """What the current thread holds open on one store: its write transaction and its read snapshot."""

    tx_conn: sqlite3.Connection | None = None
    tx_depth = 0  # nesting level of transaction(); >1 means SAVEPOINTs
    snap_conn: sqlite3.Connection | None = None


class SqliteKV:
    """A :class:`~dynavault.storage.kv.base.KVStore` in one SQLite file (``":memory:"`` works for tests)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL",
                 group_commit: bool = False, cache_mib: int = 64, readonly: bool = False,
                 timeout: float = 10.0, memory_snapshots: bool = False,
                 writer_lock: str | os.PathLike[str] | None = None, wal_pages: int = WAL_PAGES,
                 mmap: bool = True) -> None:
        """``wal_pages``: WAL frames that trigger a checkpoint (module doc; tests use fewer).
        ``memory_snapshots``: a ``:memory:`` store hands out pinned snapshots as copies (``_memory_copy``;
        the ``--in-memory`` server, whose backups need them); without it such a store has none.
        ``writer_lock``: a file whose ``flock`` queues the write transactions of several processes sharing
        the store (SQLite's own busy wait polls with sleeps of 1 ms and more; a released flock wakes the next
        writer at once).
        ``mmap=False``: read pages with ``pread`` instead of a memory map, for a store several processes write
        (``--workers``): a connection that sees another process's commit drops its page cache and unmaps the
        whole file (SQLite's ``pagerBeginReadTransaction``), so each such write paid an ``munmap`` and the page
        faults that map the pages again: with two workers putting, 0.86 ``munmap`` per put and 55 µs of kernel
        CPU per put, against 13 µs more of ``pread`` without the map (benchmarks/RESULTS.md, h-w2)."""
        path = os.fspath(path)
        self.path = path
        self._memory_snapshots = memory_snapshots and path == ":memory:"
        #: outermost commits so far; ``sync()`` makes every commit numbered <= its start value durable
        self.commit_seq = 0
        self.group_commit = group_commit and not readonly
        self._dir_synced = False
        self._local = _ThreadState()
        self._write_lock = threading.Lock()  # one write transaction at a time in this process
        self._writer_fd = (os.open(writer_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                           if writer_lock is not None else -1)
        self._pool_lock = threading.Lock()
        self._returned = threading.Condition(self._pool_lock)
        self._idle: list[sqlite3.Connection] = []  # LIFO: the top one has the warmest page cache
        self._opened = 0
        self._waiting = 0
        self._closed = False
        if readonly:
            self._open_readonly(path)
            return
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        if group_commit:
            synchronous = "NORMAL"  # durability comes from sync(), shared by concurrent commits
        self._max = 1 if path == ":memory:" else POOL_SIZE
        if path != ":memory:" and not os.path.exists(path):
            # Only sealed blobs and catalog records live here, but there is no reason to share them.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))

        def connect() -> sqlite3.Connection:
            c = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout, factory=_Conn)
            try:
                c.execute(f"PRAGMA synchronous={synchronous}")  # per connection: any of them may commit
                c.execute("PRAGMA temp_store=MEMORY")
                # SQLite's default 2 MiB page cache made a warm point read cost 12 µs instead of 8 (measured,
                # 2,000 1 KB items); the cache only grows as pages are read.
                c.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
                # Reads through a memory map instead of a pread per page: a 1 KB item lives in a leaf row that
                # spans several 4 KiB pages, and at 300k items (370 MB) GetItem went from 4,300 to 4,900 ops/s
                # with it. SQLite caps the map at its compile-time maximum (2 GiB by default). Connections of
                # one process share the mapped pages.
                c.execute(f"PRAGMA mmap_size={MMAP_BYTES if mmap else 0}")
                c.execute(f"PRAGMA wal_autocheckpoint={int(wal_pages)}")
            except BaseException:
                c.close()
                raise
            return c

        self._connect = connect
        c = None
        try:
            c = connect()
            c.execute("PRAGMA journal_mode=WAL")  # a property of the file: every later connection is in WAL
            if self._writer_fd >= 0:  # workers starting together wait here, not on SQLite's busy timeout, while
                fcntl.flock(self._writer_fd, fcntl.LOCK_EX)  # one of them moves an older store's table over
            try:
                ensure_table(c)
            finally:
                if self._writer_fd >= 0:
                    fcntl.flock(self._writer_fd, fcntl.LOCK_UN)
        except sqlite3.DatabaseError as exc:
            if c is not None:
                c.close()
            raise StartupError(f"the store {path} is not a readable SQLite database ({exc}); restore it from a "
                               "backup, or move it away to start with an empty store") from None
        self._opened = 1
        self._idle.append(c)

    def _open_readonly(self, path: str) -> None:
        """For `dynavault verify`: SQLite's read-only mode creates nothing and writes nothing (WAL readers can
        share the file with a running server when its -shm file exists)."""
        self._max = 1
        if not os.path.isfile(path):
            raise StartupError(f"no table store at {path}; give the data dir a server wrote (--data-dir)")
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        if not os.path.exists(path + "-wal"):
            # A cleanly stopped store: nothing to read from a WAL. Without immutable=1 SQLite would create
            # -wal and -shm files next to it even in read-only mode.
            uri += "&immutable=1"
        try:
            c = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, factory=_Conn)
            c.execute("PRAGMA query_only=1")
            c.execute("SELECT 1 FROM kv LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StartupError(f"the store {path} cannot be read ({exc}): is it a dynavault data dir?") from None
        self._opened = 1
        self._idle.append(c)

    def __repr__(self) -> str:
        return f"SqliteKV({self.path!r})"

    @property
    def connections(self) -> int:
        """Connections open now: one while a single thread uses the store (see the module doc)."""
        return self._opened

    # -- the pool ------------------------------------------------------------------------------
    def _borrow(self) -> sqlite3.Connection:
        with self._pool_lock:
            while True:
                if self._closed:
                    raise RuntimeError("SqliteKV is closed")
                if self._idle:
                    return self._idle.pop()
                if self._opened < self._max:
                    self._opened += 1
                    break
                self._waiting += 1
                try:
                    self._returned.wait()
                finally:
                    self._waiting -= 1
        try:
            return self._connect()
        except BaseException:
            with self._pool_lock:
                self._opened -= 1
                if self._waiting:
                    self._returned.notify()
            raise

    def _give_back(self, c: sqlite3.Connection) -> None:
        with self._pool_lock:
            self._idle.append(c)
            if self._waiting:
                self._returned.notify()

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        rows = self._fetch("SELECT v FROM kv WHERE k = ?", (check_key(key),))
        return rows[0][0] if rows else None

    def get_pair(self, a: bytes, b: bytes) -> tuple[bytes | None, bytes | None]:
        return pair(self._fetch, check_key(a), check_key(b))

    def range(
        self, lo: bytes, hi: bytes | None, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        lo = check_key(lo)
        hi = None if hi is None else check_key(hi)
        return paged_range(self._fetch, lo, hi, reverse, limit)

    def _fetch(self, sql: str, args: tuple) -> list:
        own = self._local.tx_conn  # this thread's write transaction: its reads see its writes
        if own is not None:
            return own.cur.execute(sql, args).fetchall()
        c = self._borrow()
        try:
            return c.cur.execute(sql, args).fetchall()
        finally:
            self._give_back(c)

    def snapshot(self) -> _SnapshotBlock:
        """One consistent committed state for the whole block, without the write lock (module doc)."""
        return _SnapshotBlock(self)

    def pinned_snapshot(self) -> PinnedSnapshot:
        """A read-only view of the store as it is now, held open on a connection of its own (``snapshot`` lasts
        one block on a pooled connection): in WAL mode its read transaction pins this instant while writers go
        on committing, so a backup copies a table from it without holding the write lock. Pinned before this
        returns; ``close()`` (or ``with``) ends it."""
        if self._memory_snapshots and not self._closed:
            return self._memory_copy()
        if self.path == ":memory:" or self._max == 1:
            raise RuntimeError("an in-memory or read-only store has no second connection to take a snapshot from")
        conn = self._connect()
        try:
            conn.execute("BEGIN")  # a reader in WAL mode sees only committed transactions
            conn.execute("SELECT 1 FROM kv LIMIT 1").fetchall()  # the first read fixes the snapshot
        except BaseException:
            conn.close()
            raise
        return PinnedSnapshot(conn)

    def _memory_copy(self) -> PinnedSnapshot:
        """``:memory:`` has one connection (a second would be another database) and no WAL to pin an instant
        in: the snapshot is a copy, made with SQLite's backup API while no transaction is open on it. Costs
        the store's size in memory for as long as the snapshot lives (in-memory stores are test-sized)."""
        if self._local.tx_conn is not None or self._local.snap_conn is not None:
            raise RuntimeError("a pinned snapshot of an in-memory store cannot start inside a transaction")
        copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            with self._write_lock:
                c = self._borrow()
                try:
                    c.backup(copy)
                finally:
                    self._give_back(c)
            copy.execute("BEGIN")
        except BaseException:
            copy.close()
            raise
        return PinnedSnapshot(copy)

    # -- writes --------------------------------------------------------------------------------
    def transaction(self) -> _TransactionBlock:
        """A write transaction for the ``with`` block: committed (durable per the module doc) when the block
        ends, rolled back if it raises; nested on one thread, a SAVEPOINT."""
        return _TransactionBlock(self)

    def sync(self) -> int:
        """Make every commit made so far durable; return the ``commit_seq`` that is now durable.

        Safe to call from another thread while the owner keeps committing (fdatasync works on the file, not
        on SQLite's handle, and later commits are simply not promised). A no-op under FULL."""
        seq = self.commit_seq
        if self.group_commit and self.path != ":memory:":
            try:
                fd = os.open(self.path + "-wal", os.O_RDONLY)
            except FileNotFoundError:  # nothing written since the last checkpoint removed it
                return seq
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            if not self._dir_synced:  # the WAL's directory entry, once: a new file must survive too
                dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
                self._dir_synced = True
        return seq

    def close(self) -> None:
        with self._pool_lock:
            if self._closed:
                return
            if len(self._idle) != self._opened:
                raise RuntimeError("close() inside a transaction or snapshot")
            self._closed = True
            if self._writer_fd >= 0:
                os.close(self._writer_fd)
                self._writer_fd = -1
            for c in self._idle:
                c.close()
            self._idle.clear()
            self._returned.notify_all()


class _TransactionBlock:
    """What ``with kv.transaction() as tx`` enters (a class, not a generator: one per write request)."""

    __slots__ = ("_kv", "_conn", "_tx", "_depth", "_changes")

    def __init__(self, kv: SqliteKV) -> None:
        self._kv = kv
        self._conn: sqlite3.Connection | None = None
        self._tx: SqliteTransaction | None = None
        self._depth = 0  # >0: nested at this depth (a SAVEPOINT); 0: the outermost transaction
        self._changes = 0

    def __enter__(self) -> SqliteTransaction:
        kv = self._kv
        st = kv._local
        c = st.tx_conn
        if c is not None:  # nested on this thread: a SAVEPOINT on the same connection
            depth = st.tx_depth
            c.execute(f"SAVEPOINT sp{depth}")
            st.tx_depth = depth + 1
            self._depth = depth
        else:
            if st.snap_conn is not None and kv._max == 1:
                raise RuntimeError("a write transaction cannot start inside a snapshot on a one-connection store")
            kv._write_lock.acquire()
            try:
                c = kv._borrow()
            except BaseException:
                kv._write_lock.release()
                raise
            try:
                if kv._writer_fd >= 0:
                    fcntl.flock(kv._writer_fd, fcntl.LOCK_EX)
                try:
                    c.cur.execute("BEGIN IMMEDIATE")
                except BaseException:
                    if kv._writer_fd >= 0:
                        fcntl.flock(kv._writer_fd, fcntl.LOCK_UN)
                    raise
            except BaseException:
                kv._give_back(c)
                kv._write_lock.release()
                raise
            self._changes = c.total_changes
            st.tx_conn, st.tx_depth = c, 1
        self._conn = c
        self._tx = tx = SqliteTransaction(kv, c)
        return tx

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        kv, c = self._kv, self._conn
        st = kv._local
        self._tx._open = False
        if self._depth:
            sp = f"sp{self._depth}"
            st.tx_depth = self._depth
            if exc_type is not None:
                c.execute(f"ROLLBACK TO {sp}")
            c.execute(f"RELEASE {sp}")
            return
        st.tx_conn, st.tx_depth = None, 0
        try:
            if exc_type is not None:
                c.execute("ROLLBACK")
                return
            try:
                c.cur.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            # a transaction that changed no row has nothing to sync
            if c.total_changes != self._changes:
                kv.commit_seq += 1
        finally:
            if kv._writer_fd >= 0:
                fcntl.flock(kv._writer_fd, fcntl.LOCK_UN)
            kv._give_back(c)
            kv._write_lock.release()


class PinnedSnapshot:
    """The reader ``SqliteKV.pinned_snapshot`` hands out: ``get`` and paged ``range`` over one pinned instant.
    Used by one thread at a time (a backup's copier); its own lock keeps a stray second user safe."""

    __slots__ = ("_conn", "_lock")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PinnedSnapshot(open={self._conn is not None})"

    def __enter__(self) -> PinnedSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            if conn.in_transaction:
                conn.execute("COMMIT")
            # While pinned, the snapshot kept checkpoints from folding anything written after it into the
            # database, so the WAL grew by all of it; fold it here, on this connection and the caller's thread
            # (a passive checkpoint lets writers go on), not in the next commit of the store's connection,
            # which would stall a request for as long (measured: 1.3 s after a 100 MB backup copy).
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("snapshot is closed")
        return self._conn

    def _fetch(self, sql: str, args: tuple) -> list:
        with self._lock:
            return self._c().execute(sql, args).fetchall()

    def get(self, key: bytes) -> bytes | None:
        rows = self._fetch("SELECT v FROM kv WHERE k = ?", (check_key(key),))
        return rows[0][0] if rows else None

    def get_pair(self, a: bytes, b: bytes) -> tuple[bytes | None, bytes | None]:
        return pair(self._fetch, check_key(a), check_key(b))

    def range(
        self, lo: bytes, hi: bytes | None, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        lo = check_key(lo)
        hi = None if hi is None else check_key(hi)
        return paged_range(self._fetch, lo, hi, reverse, limit)


class _SnapshotBlock:
    """What ``with kv.snapshot() as r`` enters (a class, not a generator: every page read opens one)."""

    __slots__ = ("_kv", "_snap", "_conn")

    def __init__(self, kv: SqliteKV) -> None:
        self._kv = kv
        self._snap: SqliteSnapshot | None = None
        self._conn: sqlite3.Connection | None = None  # borrowed by this block (None: nested in another)

    def __enter__(self) -> SqliteSnapshot:
        kv = self._kv
        st = kv._local
        # inside this thread's write transaction, read through it (its reads see its writes); inside an
        # outer snapshot, share its state
        c = st.tx_conn if st.tx_conn is not None else st.snap_conn
        if c is None:
            c = kv._borrow()
            try:
                # Deferred: the WAL snapshot is fixed by the block's first read and held to its end.
                c.cur.execute("BEGIN")
            except BaseException:
                kv._give_back(c)
                raise
            st.snap_conn = self._conn = c
        self._snap = SqliteSnapshot(kv, c)
        return self._snap

    def __exit__(self, *exc: object) -> None:
        if self._snap is not None:
            self._snap._open = False
        c = self._conn
        if c is None:
            return
        self._conn = None
        self._kv._local.snap_conn = None
        try:
            c.cur.execute("COMMIT")  # ends the read transaction: releases the WAL read mark
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            self._kv._give_back(c)


class SqliteSnapshot:
    """The reader a ``with kv.snapshot() as r`` block reads through; dead once the block exits."""

    __slots__ = ("_kv", "_conn", "_open")
    _what = "snapshot"

    def __init__(self, kv: SqliteKV, conn: sqlite3.Connection) -> None:
        self._kv = kv
        self._conn = conn
        self._open = True

    def __repr__(self) -> str:
        return f"SqliteSnapshot({self._kv.path!r}, open={self._open})"

    def _rows(self, sql: str, args: tuple) -> list:
        if not self._open:
            raise RuntimeError(f"{self._what} is finished")
        return self._conn.cur.execute(sql, args).fetchall()

    def get(self, key: bytes) -> bytes | None:
        rows = self._rows("SELECT v FROM kv WHERE k = ?", (check_key(key),))
        return rows[0][0] if rows else None

    def get_pair(self, a: bytes, b: bytes) -> tuple[bytes | None, bytes | None]:
        return pair(self._rows, check_key(a), check_key(b))

    def range(
        self, lo: bytes, hi: bytes | None, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        if not self._open:
            raise RuntimeError(f"{self._what} is finished")
        lo = check_key(lo)
        hi = None if hi is None else check_key(hi)
        return paged_range(self._rows, lo, hi, reverse, limit)


class SqliteTransaction(SqliteSnapshot):
    """The handle a ``with kv.transaction() as tx`` block writes through; dead once the block exits."""

    __slots__ = ()
    _what = "transaction"

    def __repr__(self) -> str:
        return f"SqliteTransaction({self._kv.path!r}, open={self._open})"

    def _check(self) -> sqlite3.Connection:
        if not self._open:
            raise RuntimeError("transaction is finished")
        return self._conn

    def put(self, key: bytes, value: Sealed | CatalogRecord) -> None:
        raw = check_value(value)
        key = check_key(key)
        self._check().cur.execute(
            "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", (key, raw)
        )

    def delete(self, key: bytes) -> None:
        key = check_key(key)
        self._check().cur.execute("DELETE FROM kv WHERE k = ?", (key,))
