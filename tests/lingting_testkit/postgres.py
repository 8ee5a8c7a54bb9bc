"""A real PostgreSQL server for the tests: Debian's binaries (installed by
`make test`), a fresh cluster in a temporary directory, on a free port of
127.0.0.1, stopped at the end. PostgreSQL refuses to run as root: as root it
runs as the `postgres` user the Debian package creates."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager

from .servers import free_port


def binaries() -> str | None:
    """The folder of initdb and postgres, or None (not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


class Postgres:
    def __init__(self, port: int, folder: str):
        self.port = port
        self.folder = folder

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://lingting@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL (each test gets its own)."""
        import psycopg
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@contextmanager
def running_postgres():
    """Yields a Postgres; raises RuntimeError when it cannot start."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (make test installs Debian's postgresql)")
    folder = tempfile.mkdtemp(prefix="lingting-pg-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(folder, "data")
    port = free_port()
    subprocess.run([*run_as, f"{bin_dir}/initdb", "-D", data, "-U", "lingting", "--auth=trust", "-E", "UTF8",
                    "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True)
    log = os.path.join(folder, "postgres.log")
    server = subprocess.Popen(
        [*run_as, f"{bin_dir}/postgres", "-D", data, "-p", str(port), "-k", folder, "-c", "listen_addresses=127.0.0.1",
         "-c", "fsync=off", "-c", "max_connections=200", "-c", "logging_collector=off"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        import psycopg
        postgres = Postgres(port, folder)
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(postgres.url(), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {open(log).read()[-2000:]}") from None
                time.sleep(0.1)
        yield postgres
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)
