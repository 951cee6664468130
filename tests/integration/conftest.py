"""conftest.py: fixtures for the integration tests.

mariadb   one throwaway MariaDB server for the session (or the one that
          tests/run-all started, named by TALLYD_TEST_MYSQL_* variables)
db        a fresh database on it for each test, with a pymysql helper
tallyd    a factory: tallyd(config_text) starts a daemon that is stopped, and
          checked for a clean exit, when the test ends
"""
import os
import shutil
import sys
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from harness import Tallyd, free_port, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))


def pytest_configure(config):
    config.addinivalue_line("markers", "concurrency: also run under ThreadSanitizer")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "galera: needs a 3-node Galera cluster (test_galera.py)")


class MariaDB:
    """Connection details of a MariaDB server and a way to run SQL on it."""

    def __init__(self, host, port, socket_path, user, password):
        self.host, self.port, self.socket, self.user, self.password = (
            host, port, socket_path, user, password)
        self.process = None
        self.directory = None

    def connect(self, database=None):
        import pymysql
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=database, autocommit=True,
                               connect_timeout=5)

    def start(self):
        """Starts a private server (tests run without tests/run-all)."""
        if shutil.which("mariadbd") is None:
            pytest.skip("mariadbd is not installed (Debian: mariadb-server-core)")
        self.directory = tempfile.mkdtemp(prefix="tallyd-db-")
        self.socket = os.path.join(self.directory, "sock")
        self.port = free_port()
        subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + self.directory + "/data",
                        "--user=root", "--auth-root-authentication-method=socket"],
                       check=True, capture_output=True)
        self.command = [
            "mariadbd", "--no-defaults", "--datadir=" + self.directory + "/data",
            "--socket=" + self.socket, "--port=%d" % self.port, "--bind-address=127.0.0.1",
            "--user=root", "--pid-file=" + self.directory + "/pid", "--skip-log-bin",
            "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--max-connections=500",
            "--log-error=" + self.directory + "/err", "--tmpdir=" + self.directory]
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for(lambda: self.root("SELECT 1").returncode == 0, 60, "MariaDB to start")
        self.root("CREATE USER 'tallyd'@'127.0.0.1' IDENTIFIED BY 'tallyd';"
             "CREATE USER 'tallyd'@'localhost' IDENTIFIED BY 'tallyd';"
             "GRANT ALL ON *.* TO 'tallyd'@'127.0.0.1'; GRANT ALL ON *.* TO 'tallyd'@'localhost';")
        self.host, self.user, self.password = "127.0.0.1", "tallyd", "tallyd"

    def root(self, sql):
        """Runs SQL as root (a private server's socket): grants, KILL."""
        return subprocess.run(["mariadb", "--no-defaults", "-S", self.socket, "-u", "root",
                               "-e", sql], capture_output=True, text=True)

    def pause(self):
        """Stops the server, keeping its data (for outage tests)."""
        self.process.terminate()
        self.process.wait(60)

    def resume(self):
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for(lambda: self._answers(), 60, "MariaDB to start again")

    def _answers(self):
        try:
            self.connect().close()
            return True
        except Exception:
            return False

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(60)
            shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb():
    env = os.environ
    if env.get("TALLYD_TEST_MYSQL_PORT"):
        yield MariaDB(env.get("TALLYD_TEST_MYSQL_HOST", "127.0.0.1"),
                      int(env["TALLYD_TEST_MYSQL_PORT"]), env.get("TALLYD_TEST_MYSQL_SOCKET"),
                      env.get("TALLYD_TEST_MYSQL_USER", "tallyd"),
                      env.get("TALLYD_TEST_MYSQL_PASSWORD", "tallyd"))
        return
    server = MariaDB(None, None, None, None, None)
    server.start()
    yield server
    server.stop()


class Database:
    """One test's database: its name, SQL helpers, and a config snippet."""

    def __init__(self, server, name):
        self.server, self.name = server, name
        self.connection = server.connect(name)

    def execute(self, sql, *args):
        with self.connection.cursor() as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchall()

    def reconnect(self):
        """After the server was stopped and started again."""
        self.connection = self.server.connect(self.name)

    def value(self, sql, *args):
        rows = self.execute(sql, *args)
        return rows[0][0] if rows else None

    def config(self, **extra):
        settings = {"driver": '"mysql"', "host": '"127.0.0.1"', "port": str(self.server.port),
                    "user": '"%s"' % self.server.user, "password": '"%s"' % self.server.password,
                    "name": '"%s"' % self.name, "connect_timeout": "3"}
        settings.update(extra)
        return "database = { %s };\n" % " ".join("%s = %s;" % kv for kv in settings.items())

    def load_howto_tables(self):
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "db", "schema.mysql.sql")) as f:
            text = "\n".join(l for l in f.read().splitlines() if not l.strip().startswith("--"))
        for statement in text.split(";"):
            if statement.strip():
                self.execute(statement)


@pytest.fixture
def private_mariadb():
    """A server of this test's own, which the test may stop and start."""
    server = MariaDB(None, None, None, None, None)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_db(private_mariadb):
    admin = private_mariadb.connect()
    with admin.cursor() as cursor:
        cursor.execute("CREATE DATABASE tallyd")
    admin.close()
    database = Database(private_mariadb, "tallyd")
    yield database
    database.connection.close()


@pytest.fixture
def db(mariadb):
    name = "t_" + uuid.uuid4().hex[:12]
    admin = mariadb.connect()
    with admin.cursor() as cursor:
        cursor.execute("CREATE DATABASE " + name)
    database = Database(mariadb, name)
    yield database
    database.connection.close()
    with admin.cursor() as cursor:
        cursor.execute("DROP DATABASE " + name)
    admin.close()


@pytest.fixture
def tallyd(tmp_path):
    """tallyd(config, **start_args) -> a running Tallyd; stopped at the end."""
    started = []

    def start(config, name=None, binary=None, **start_args):
        daemon = Tallyd(str(tmp_path), config, name or "tallyd%d" % len(started), binary)
        started.append(daemon)
        return daemon.start(**start_args)

    yield start
    for daemon in started:
        status = daemon.stop()
        if status is not None and status not in (0, -signal.SIGKILL):
            raise AssertionError("tallyd exited with %s:\n%s" % (status, daemon.log()))
