"""test_config_check.py: `tallyd -t` checks what start checks, and start
checks it the same way — the user and group, the files it writes, listeners
no virtual host serves, quotas no Accounting feeds, SqlUserConfig queries
with the wrong number of ?; `tallyd -t --connect` checks the database with
the configured credentials; a refused login, an unknown database or tables
that cannot be made stop start with a configuration error; a database that
is down at start does not, and the tables are made when it comes back (and
never again on a reconnect)."""
import os
import subprocess
import tempfile

import pytest

from dbproxy import Proxy
from harness import PolicyClient, TALLYD, free_port, wait_for


def check(path, *args):
    """tallyd -t on a config file: (exit status, stdout, stderr)."""
    result = subprocess.run([TALLYD, "-t", *args, "-c", str(path)], capture_output=True,
                            text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


def write(tmp_path, text, name="t.conf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def plugins_config(port, database, plugins):
    return ('listen = "127.0.0.1:%d";\n%svirtual_hosts = ( { port = %d; plugins = (\n%s\n) } );\n'
            % (port, database, port, ",\n".join(plugins)))


ACCOUNTING = '{ name = "AcctIP"; module = "Accounting"; fields = "client_address"; }'
QUOTA = ('{ name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";'
         ' threshold = 1000; }')
USER_CONFIG = ('{ name = "Config"; module = "SqlUserConfig"; field = "client_address";\n'
               '  sql_query = "SELECT config FROM user_config WHERE address = ?"; }')
ACTION = '{ name = "a"; module = "Action"; action = "OK"; }'
RATELIMIT = ('{ name = "RateIP"; module = "RateLimit"; field = "client_address";'
             ' limits = ( [10, 60] ); }')


def start_fails(path):
    """Starts tallyd on a config file that should stop start: its stderr."""
    result = subprocess.run([TALLYD, "-f", "-c", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    return result.stderr


STDERR = 'log_target = "stderr"; control_socket = "";\n'


def line_of(path, text):
    """The number of the first line of the file that holds `text`."""
    for number, line in enumerate(open(path), 1):
        if text in line:
            return number
    raise AssertionError("%s not in %s" % (text, path))


# ------------------------------------------------------------- -t, no database


def test_check_reports_a_missing_user_and_group_at_their_lines(tmp_path):
    path = write(tmp_path, 'user = "no-such-user-here";\ngroup = "no-such-group-here";\n' +
                 plugins_config(free_port(), "", [ACTION]))
    status, out, err = check(path)
    assert status == 1 and "is OK" not in out
    assert "%s:1: user 'no-such-user-here' does not exist" % path in err
    assert "%s:2: group 'no-such-group-here' does not exist" % path in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (checks as user nobody)")
def test_check_reports_files_the_run_as_user_cannot_write(tmp_path):
    """Started as root with user nobody, tallyd opens its SQLite file and
    journal after it has dropped privileges: -t checks them as nobody, and
    start refuses the same way."""
    root_only = tempfile.mkdtemp(prefix="tallyd-root-only-")
    os.chmod(root_only, 0o755)
    port = free_port()
    path = write(tmp_path, 'user = "nobody"; group = "nogroup";\n'
                 'log_target = "stderr"; control_socket = "";\n'
                 'pid_file = "%s/tallyd.pid";\n'
                 'database = { path = "%s/db.sqlite"; };\n'
                 'accounting = { journal = "%s/journal"; };\n' % (root_only, root_only, root_only) +
                 plugins_config(port, "", [ACCOUNTING]))
    status, out, err = check(path)
    assert status == 1, err
    assert ("%s:4: database.path %s/db.sqlite: user nobody cannot write directory %s"
            % (path, root_only, root_only)) in err
    assert "%s:5: accounting.journal %s/journal: user nobody cannot write directory" % (
        path, root_only) in err
    assert "pid_file" not in err            # root writes it, before the drop
    assert "database.path %s/db.sqlite: user nobody cannot write directory" % root_only in \
        start_fails(path)
    os.chmod(root_only, 0o777)              # now nobody can
    status, out, err = check(path)
    assert status == 0, err
    assert "is OK" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (checks as user nobody)")
def test_check_reports_a_ratelimit_state_the_run_as_user_cannot_write(tmp_path):
    """The RateLimit state file is written after privileges drop, at stop
    and every snapshot_interval: -t checks its directory as the user."""
    root_only = tempfile.mkdtemp(prefix="tallyd-root-only-")
    os.chmod(root_only, 0o755)
    path = write(tmp_path, 'user = "nobody"; group = "nogroup";\n'
                 'log_target = "stderr"; control_socket = "";\n'
                 'ratelimit_state = "%s/rl.state";\n' % root_only +
                 plugins_config(free_port(), "", [RATELIMIT]))
    status, out, err = check(path)
    assert status == 1, err
    assert ("%s:3: ratelimit_state %s/rl.state: user nobody cannot write directory %s"
            % (path, root_only, root_only)) in err
    os.chmod(root_only, 0o777)
    status, out, err = check(path)
    assert status == 0, err
    with open(os.path.join(root_only, "rl.state"), "w") as f:   # root's, 0644
        f.write("left by a run as root")
    status, out, err = check(path)          # a save replaces it by a rename
    assert status == 0, err


def test_check_reports_a_pid_file_directory_that_cannot_be_written(tmp_path):
    path = write(tmp_path, 'pid_file = "%s/tallyd.pid";\n' % (tmp_path / "a-file") +
                 plugins_config(free_port(), "", [ACTION]))
    (tmp_path / "a-file").write_text("")
    status, out, err = check(path)
    assert status == 1
    assert "%s:1: pid_file %s/tallyd.pid: directory %s is not a directory" % (
        path, tmp_path / "a-file", tmp_path / "a-file") in err
    # one that does not exist yet is what systemd's RuntimeDirectory= makes: a warning
    path = write(tmp_path, 'pid_file = "%s/run/tallyd.pid";\n' % tmp_path +
                 plugins_config(free_port(), "", [ACTION]))
    status, out, err = check(path)
    assert status == 0, err
    assert "warning: %s:1: pid_file %s/run/tallyd.pid: directory %s/run does not exist (yet)" % (
        path, tmp_path, tmp_path) in err


def test_check_and_start_warn_of_a_listener_no_virtual_host_serves(tallyd, tmp_path):
    a, b = free_port(), free_port()
    text = ('listen = [ "127.0.0.1:%d",\n "127.0.0.1:%d" ];\n' % (a, b) +
            'virtual_hosts = ( { port = %d; plugins = ( %s ); } );\n' % (a, ACTION))
    path = write(tmp_path, text)
    status, out, err = check(path)
    assert status == 0 and "is OK" in out
    warning = "listen 127.0.0.1:%d: no virtual host serves it; its requests are answered dunno" % b
    assert "warning: %s:2: %s" % (path, warning) in err
    daemon = tallyd(text, wait_port=a)
    assert daemon.log().count(warning) == 1
    assert "%s:" % daemon.config_path in daemon.log()


def test_check_and_start_warn_of_a_quota_no_accounting_feeds(tallyd, tmp_path):
    """tallyd.conf(5): a Quota reads what an Accounting writes, so their
    table and time_pattern must agree.  Here they do not: the quota would
    never trigger on what this tallyd counts."""
    port = free_port()
    monthly_quota = QUOTA
    daily_accounting = ACCOUNTING.replace("}", 'time_pattern = "%Y-%m-%d"; }')
    sqlite = 'database = { path = "%s/tallyd.sqlite"; };\n' % tmp_path
    text = plugins_config(port, sqlite, [monthly_quota, daily_accounting])
    path = write(tmp_path, text)
    status, out, err = check(path)
    assert status == 0, err
    expected = ("%s:%d: plugin 'QuotaIP': no Accounting writes table acct_client_address with "
                'time_pattern "%%Y-%%m"' % (path, line_of(path, "QuotaIP")))
    assert "warning: " + expected in err
    daemon = tallyd(text, wait_port=port)
    assert "plugin 'QuotaIP': no Accounting writes table acct_client_address" in daemon.log()
    # agreeing, or another prefix the Accounting writes too: no warning
    for accounting in (ACCOUNTING, ACCOUNTING.replace("}", 'table_prefix = "x_"; }')
                       .replace("AcctIP", "Other") + ",\n" + ACCOUNTING):
        path = write(tmp_path, plugins_config(port, sqlite, [QUOTA, accounting]))
        status, out, err = check(path)
        assert status == 0 and "warning" not in err, err


@pytest.mark.parametrize("query, count", [
    ("SELECT config FROM user_config WHERE address = ? OR domain = ?", 2),
    ("SELECT config FROM user_config WHERE address = '?'", 0)])
def test_check_refuses_an_sql_query_without_exactly_one_placeholder(tmp_path, query, count):
    """Accepted until now, then one failed lookup and log line per request."""
    path = write(tmp_path, plugins_config(free_port(), 'database = { path = "%s/x.sqlite"; };\n'
                                          % tmp_path, [
        '{ name = "Config"; module = "SqlUserConfig"; field = "client_address";\n'
        '  sql_query = "%s"; }' % query]))
    status, out, err = check(path)
    assert status == 1 and "is OK" not in out
    assert "%s:%d: plugin 'Config': sql_query must be an SQL query with exactly one ?" % (
        path, line_of(path, "sql_query")) in err


def test_a_config_without_a_database_plugin_opens_no_store(tallyd, tmp_path):
    """Only Action plugins: the SQLite path's directory is missing, and
    nothing needs it."""
    port = free_port()
    text = 'database = { path = "%s/missing/tallyd.sqlite"; };\n' % tmp_path + \
        plugins_config(port, "", [ACTION])
    status, out, err = check(write(tmp_path, text))
    assert status == 0, err
    daemon = tallyd(text, wait_port=port)
    assert PolicyClient(port=port).ask() == "OK"
    daemon.ctl("flush")                         # nothing to write, and says so
    assert "no database is opened" in daemon.log()
    assert not os.path.exists(str(tmp_path / "missing"))


def test_a_reload_that_needs_a_store_is_refused_when_started_without(tallyd, tmp_path):
    port = free_port()
    daemon = tallyd(plugins_config(port, "", [ACTION]), wait_port=port)
    daemon.write_config(plugins_config(port, 'database = { path = "%s/x.sqlite"; };\n' % tmp_path,
                                       [ACCOUNTING]))
    result = daemon.ctl("reload", check=False)
    assert result.returncode != 0
    assert "started without a database" in daemon.log()
    assert PolicyClient(port=port).ask() == "OK"


# ------------------------------------------------------------------ databases


@pytest.fixture
def limited_user(db):
    """A user of the test's database with SELECT, INSERT and UPDATE but no
    CREATE; dropped at the end."""
    name = "lim_" + db.name[-8:]
    for host in ("127.0.0.1", "localhost"):
        db.server.root("CREATE USER '%s'@'%s' IDENTIFIED BY 'limited';"
                       "GRANT SELECT, INSERT, UPDATE ON `%s`.* TO '%s'@'%s';"
                       % (name, host, db.name, name, host))
    yield name
    for host in ("127.0.0.1", "localhost"):
        db.server.root("DROP USER IF EXISTS '%s'@'%s';" % (name, host))


def test_check_connect_accepts_a_good_database_and_says_what_start_will_create(db, tmp_path):
    db.execute("CREATE TABLE user_config (address VARCHAR(255), config TEXT)")
    path = write(tmp_path, plugins_config(free_port(), db.config(),
                                          [USER_CONFIG, QUOTA, ACCOUNTING]))
    status, out, err = check(path, "--connect")
    assert status == 0, err
    assert "configuration %s is OK, and so is its database" % path in out
    assert "accounting table acct_client_address will be created at start" in out
    # it changed nothing
    assert db.value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                    db.name) == 1


@pytest.mark.parametrize("setting, value, message", [
    ("password", '"wrong"', "access denied for user 'tallyd'"),
    ("name", '"no_such_database"', "database 'no_such_database' does not exist")])
def test_check_connect_and_start_call_a_refused_login_a_configuration_error(
        db, tmp_path, tallyd, setting, value, message):
    port = free_port()
    text = plugins_config(port, db.config(**{setting: value}), [QUOTA, ACCOUNTING])
    path = write(tmp_path, text)
    status, out, err = check(path, "--connect")
    assert status == 1 and "is OK" not in out
    hint = "check database.user and database.password" if setting == "password" else \
        "check database.name"
    assert message in err and "%s in %s" % (hint, path) in err, err
    assert "database unreachable" not in err
    # start: the same, as a configuration error, and it does not start
    log = start_fails(write(tmp_path, STDERR + text, "start.conf"))
    assert "configuration error: " + message in log
    assert "database unreachable" not in log


def test_check_connect_and_start_refuse_tables_the_user_cannot_create(db, tmp_path, tallyd,
                                                                       limited_user):
    port = free_port()
    text = plugins_config(port, db.config(user='"%s"' % limited_user, password='"limited"'),
                          [QUOTA, ACCOUNTING])
    path = write(tmp_path, text)
    status, out, err = check(path, "--connect")
    assert status == 1
    assert "creating accounting table acct_client_address: CREATE command denied" in err
    assert "the user needs CREATE on the database" in err
    log = start_fails(write(tmp_path, STDERR + text, "start.conf"))
    assert "refusing to start: creating tallyd_flushes: CREATE command denied" in log
    # with the tables made by the admin (schema.mysql.sql), the same user is enough
    db.load_howto_tables()
    status, out, err = check(path, "--connect")
    assert status == 0, err
    tallyd(text, name="again", wait_port=port)


def test_check_connect_reports_unusable_columns_and_queries(db, tmp_path):
    db.execute("CREATE TABLE acct_client_address (`key` VARCHAR(255), `time` VARCHAR(255), "
               "`count` INT)")
    path = write(tmp_path, plugins_config(free_port(), db.config(), [USER_CONFIG, ACCOUNTING]))
    status, out, err = check(path, "--connect")
    assert status == 1
    assert "reading the columns of accounting table acct_client_address: Unknown column" in err
    assert "plugin 'Config': sql_query: preparing it: Table '%s.user_config' doesn't exist" % (
        db.name) in err


def counted(db):
    """The total count, or None while the table does not exist."""
    if not db.value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_NAME = 'acct_client_address'", db.name):
        return None
    return db.value("SELECT SUM(count) FROM acct_client_address")


def create_table_statements(db):
    return int(db.execute("SHOW GLOBAL STATUS LIKE 'Com_create_table'")[0][1])


def test_down_at_start_it_answers_and_makes_the_tables_when_back_and_never_on_reconnect(
        db, tallyd):
    """DESIGN.md: a database outage is ridden out, at start too.  The tables
    are made at the first connection, before the first flush; a reconnect
    later runs no DDL (on Galera even CREATE TABLE IF NOT EXISTS is a
    statement the whole cluster runs in turn)."""
    database_port = free_port()                    # nothing listens there yet
    port = free_port()
    daemon = tallyd(plugins_config(port, db.config(port=str(database_port), connect_timeout="1"),
                                   [QUOTA, ACCOUNTING]).replace(
        "virtual_hosts", "accounting = { flush_interval = 0.2; };\nvirtual_hosts"),
        wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.70") == "dunno"
    assert "database unreachable" in daemon.log()
    proxy = Proxy(db.server.port, port=database_port)
    wait_for(lambda: counted(db) == 1, 20,
             "the tables made and the first flush written when the database is back")
    before = create_table_statements(db)
    ids = db.server.root("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '%s' AND "
                         "ID <> CONNECTION_ID()" % db.name).stdout.split()[1:]
    for connection in ids:                         # tallyd's connections, not the test's
        if int(connection) != db.connection.thread_id():
            db.server.root("KILL %s" % connection)
    assert client.ask(client_address="192.0.2.70") == "dunno"
    wait_for(lambda: counted(db) == 2, 20,
             "the flush written again after the reconnect")
    assert "database connection lost" in daemon.log()
    assert create_table_statements(db) == before, "a reconnect ran CREATE TABLE"
    proxy.close()


def test_a_login_refused_while_running_is_a_configuration_error_ridden_out(db, tallyd):
    """The password changed on the server while tallyd runs: the log says
    what to check (not "database unreachable"), requests are answered from
    memory, and the increments are written once the password is right."""
    user = "pw_" + db.name[-8:]
    grant = "GRANT ALL ON `%s`.* TO '%s'@'127.0.0.1';" % (db.name, user)
    db.server.root("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY 'first';" % user + grant)
    try:
        port = free_port()
        daemon = tallyd(plugins_config(port, db.config(user='"%s"' % user, password='"first"'),
                                       [QUOTA, ACCOUNTING]).replace(
            "virtual_hosts", "accounting = { flush_interval = 0.2; };\nvirtual_hosts"),
            wait_port=port)
        client = PolicyClient(port=port)
        assert client.ask(client_address="192.0.2.80") == "dunno"
        wait_for(lambda: counted(db) == 1, 20, "the first flush")
        db.server.root("ALTER USER '%s'@'127.0.0.1' IDENTIFIED BY 'second';" % user)
        ids = db.server.root("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '%s'"
                             % user).stdout.split()[1:]
        for connection in ids:
            db.server.root("KILL %s" % connection)
        assert client.ask(client_address="192.0.2.80") == "dunno"
        wait_for(lambda: "configuration error: access denied for user '%s'" % user in daemon.log(),
                 20, "the refused login in the log")
        assert "check database.user and database.password in %s" % daemon.config_path in \
            daemon.log()
        assert "database unreachable" not in daemon.log()
        db.server.root("ALTER USER '%s'@'127.0.0.1' IDENTIFIED BY 'first';" % user)
        wait_for(lambda: counted(db) == 2, 30, "the increment written once the login works")
    finally:
        db.server.root("DROP USER IF EXISTS '%s'@'127.0.0.1';" % user)


def test_check_connect_reads_an_sqlite_file_and_leaves_nothing_behind(tmp_path):
    """On SQLite, -t --connect changes nothing: no file is made (run as
    root, a -wal or -shm file would be root's, and the daemon could not
    write it), and a table with unusable columns is reported."""
    import sqlite3
    database = tmp_path / "tallyd.sqlite"
    text = plugins_config(free_port(), 'database = { path = "%s"; };\n' % database,
                          [QUOTA, ACCOUNTING])
    path = write(tmp_path, text)
    status, out, err = check(path, "--connect")
    assert status == 0, err
    assert "SQLite file %s will be created at start" % database in out
    assert sorted(os.listdir(str(tmp_path))) == ["t.conf"]
    connection = sqlite3.connect(str(database))
    connection.execute("CREATE TABLE acct_client_address (key TEXT, time TEXT, count INTEGER)")
    connection.close()
    status, out, err = check(path, "--connect")
    assert status == 1
    assert "reading the columns of accounting table acct_client_address: no such column" in err
    assert sorted(os.listdir(str(tmp_path))) == ["t.conf", "tallyd.sqlite"]
