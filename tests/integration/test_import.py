"""test_import.py: what tallyd --import-mtpolicyd writes from a real
mtpolicyd.conf starts, unchanged, the way debian/tallyd.service starts
tallyd, and answers Postfix.

tests/lib/run-as-unit plays systemd: user tallyd, /etc/tallyd/tallyd.conf,
writable /run/tallyd and /var/lib/tallyd only, the unit's ExecStartPre (-t)
and ExecStart (-f), and a syslog socket of the test's own for the log.
It needs root, as the package test does; user tallyd is created as the
package's postinst creates it when it is missing.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from harness import TALLYD, PolicyClient, free_port, wait_for

RUN_AS_UNIT = os.path.join(os.path.dirname(__file__), "..", "lib", "run-as-unit")

# The how-to's configuration as a relay runs it: Debian's process settings
# (user, group, pid_file, Net::Server's pool, log_file, a Memcached
# connection and session cache), then the how-to's connection, virtual host and plugins.
MTPOLICYD_CONF = """\
# -*- apache -*-
user=mtpolicyd
group=mtpolicyd
pid_file="/run/mtpolicyd/mtpolicyd.pid"

# 0=>'err', 1=>'warning', 2=>'notice', 3=>'info', 4=>'debug' (default: 2)
log_level=2
log_file="/var/log/mtpolicyd.log"

host=127.0.0.1
port="127.0.0.1:{port}"

min_servers=4
min_spare_servers=4
max_spare_servers=12
max_servers=50
max_requests=1000

keepalive_timeout=60
max_keepalive=0
request_timeout=20

<Connection memcached>
  module = "Memcached"
  servers = "127.0.0.1:11211"
</Connection>

<SessionCache>
  module = "Memcached"
  expire = "600"
  lock_wait = 50
</SessionCache>

<Connection db>
  module = "Sql"
  dsn = "dbi:mysql:database={database};host=127.0.0.1;port={db_port}"
  user = "{db_user}"
  password = "{db_password}"
</Connection>

<VirtualHost {port}>
  name="accounting"
  <Plugin QuotaPolicyConfig>
    module = "SqlUserConfig"
    sql_query = "SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) WHERE h.client_address=?"
    field = "client_address"
  </Plugin>
  <Plugin QuotaIP>
    module = "Quota"
    field = "client_address"
    metric = "count"
    threshold = 1000
    uc_threshold = "quota_count"
    action = "defer you exceeded your monthly limit, please insert coin"
    # time_pattern = "%Y-%m"
    # table_prefix = "acct_"
  </Plugin>
  <Plugin AcctIP>
    module = "Accounting"
    fields = "client_address"
    # time_pattern = "%Y-%m"
    # table_prefix = "acct_"
  </Plugin>
</VirtualHost>
"""


@pytest.fixture
def unit_directory():
    """A directory user tallyd can reach (pytest's tmp_path is root's only)."""
    if os.geteuid() != 0:
        pytest.skip("starting tallyd as tallyd.service does needs root")
    for tool in ("unshare", "setpriv", "findmnt"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (Debian: util-linux)" % tool)
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow a mount namespace (unshare --mount)")
    try:
        pwd.getpwnam("tallyd")
    except KeyError:                  # as debian/tallyd.postinst creates it
        if shutil.which("adduser"):
            subprocess.run(["adduser", "--system", "--group", "--quiet", "--home",
                            "/var/lib/tallyd", "--no-create-home", "tallyd"], check=True)
        else:                         # a minimal Debian has no adduser
            subprocess.run(["useradd", "--system", "--user-group", "--home-dir",
                            "/var/lib/tallyd", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", "tallyd"], check=True)
    directory = tempfile.mkdtemp(prefix="tallyd-unit-")
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


class SyslogReceiver:
    """The /dev/log tallyd logs to under run-as-unit: lines kept in order."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.2)
        self.lines = []
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while self.running:
            try:
                self.lines.append(self.sock.recv(65536).decode(errors="replace"))
            except socket.timeout:
                continue
            except OSError:
                return

    def text(self):
        return "\n".join(self.lines)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


class UnitService:
    """tallyd started by tests/lib/run-as-unit on a config text."""

    def __init__(self, directory, config_text):
        self.directory = directory
        self.config_text = config_text
        config = os.path.join(directory, "tallyd.conf")
        with open(config, "w") as f:
            f.write(config_text)
        self.syslog = SyslogReceiver(os.path.join(directory, "log"))
        with open(os.path.join(directory, "unit.out"), "wb") as out:
            self.process = subprocess.Popen([RUN_AS_UNIT, TALLYD, config, self.syslog.path],
                                            stdout=out, stderr=subprocess.STDOUT)

    def output(self):
        """What the unit's commands printed, the log, and the config."""
        with open(os.path.join(self.directory, "unit.out"), errors="replace") as f:
            return "%s\n--- syslog:\n%s\n--- the config:\n%s" % (
                f.read(), self.syslog.text(), self.config_text)

    def wait_started(self):
        def started():
            if self.process.poll() is not None:
                raise AssertionError("tallyd under the unit exited with %s:\n%s"
                                     % (self.process.returncode, self.output()))
            return " started: " in self.syslog.text()
        wait_for(started, 20, "tallyd to start under the unit")

    def stop(self):
        """SIGTERM, as systemctl stop sends; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            self.syslog.close()


def test_imported_howto_config_starts_under_the_debian_unit_and_answers(db, unit_directory):
    db.load_howto_tables()
    db.execute("INSERT INTO relay_policies VALUES (1, 'small relay', '{\"quota_count\":\"2\"}')")
    db.execute("INSERT INTO relay_hosts (client_address, relay_policy) VALUES ('192.0.2.7', 1)")
    port = free_port()
    mtpolicyd_conf = os.path.join(unit_directory, "mtpolicyd.conf")
    with open(mtpolicyd_conf, "w") as f:
        f.write(MTPOLICYD_CONF.format(port=port, database=db.name, db_port=db.server.port,
                                      db_user=db.server.user, db_password=db.server.password))
    imported = subprocess.run([TALLYD, "--import-mtpolicyd", mtpolicyd_conf],
                              capture_output=True, text=True)

    service = UnitService(unit_directory, imported.stdout)
    try:
        service.wait_started()
        client = PolicyClient(port=port)
        # the relay policy's quota_count (2) replaces the threshold: the
        # third message of the month is deferred; with the session cache a
        # request repeated for the first message does not count it again
        answers = [client.ask(client_address="192.0.2.7", instance="7a.7b.%d" % n)
                   for n in (1, 1, 2, 3)]
        assert answers == ["dunno", "dunno", "dunno",
                           "defer you exceeded your monthly limit, please insert coin"], \
            service.output()
        assert client.ask(client_address="192.0.2.8") == "dunno"
        client.close()
        assert "configuration /etc/tallyd/tallyd.conf is OK" in service.output()
    finally:
        status = service.stop()
    assert status == 0, service.output()
    assert "stopped" in service.syslog.text()

    # Net::Server's process knobs, log_file and the Memcached connection
    # change no answer: listed, and the import exits 0
    assert imported.returncode == 0, imported.stderr
    assert "were not translated" not in imported.stderr
    for knob in ("min_servers = 4", "max_requests = 1000", "max_keepalive = 0",
                 "log_file = /var/log/mtpolicyd.log", "connection memcached",
                 "<SessionCache> lock_wait = 50"):
        assert knob in imported.stdout and knob in imported.stderr, knob
    # the session cache is kept, with mtpolicyd's expire as its ttl
    assert "session_cache = {\n  ttl = 600;\n};" in imported.stdout


def test_imported_debian_sqlite_config_starts_under_the_debian_unit(unit_directory):
    """Debian's shipped mtpolicyd.conf keeps its counts in an SQLite file in
    /var/lib/mtpolicyd, which the unit does not let tallyd write."""
    port = free_port()
    with open(os.path.join(os.path.dirname(__file__), "..", "unit", "data",
                           "mtpolicyd-debian.conf")) as f:
        text = f.read().replace("12345", str(port))
    mtpolicyd_conf = os.path.join(unit_directory, "mtpolicyd.conf")
    with open(mtpolicyd_conf, "w") as f:
        f.write(text)
    imported = subprocess.run([TALLYD, "--import-mtpolicyd", mtpolicyd_conf],
                              capture_output=True, text=True)
    assert imported.returncode == 2             # Greylist, RBL... are left out

    service = UnitService(unit_directory, imported.stdout)
    try:
        service.wait_started()
        client = PolicyClient(port=port)
        assert client.ask(client_address="192.0.2.7") == "dunno"
        client.close()
    finally:
        status = service.stop()
    assert status == 0, service.output()
    # its counts start from zero unless the file is copied: listed
    assert "database /var/lib/mtpolicyd/mtpolicyd.sqlite: " in imported.stderr
