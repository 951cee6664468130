"""test_accounting.py: the mtpolicyd how-to end to end — SqlUserConfig,
Quota and Accounting over the counter cache and the flusher, against a real
MariaDB and against the embedded SQLite store."""
import os
import socket
import sqlite3
import threading
import time

import pytest

from harness import PolicyClient, encode, free_port, postfix_request, wait_for

DEFER = "defer you exceeded your monthly limit, please insert coin"
HOWTO_QUERY = ("SELECT p.config FROM relay_policies p JOIN relay_hosts h "
               "ON (h.relay_policy = p.id) WHERE h.client_address=?")


def howto_config(port, database, threshold=1000, flush_interval=0.2, extra=""):
    """The how-to's configuration, in tallyd's syntax, on `database`."""
    return ('listen = "127.0.0.1:%d";\n%s%s'
            'accounting = { flush_interval = %s; };\n'
            'virtual_hosts = ( { port = %d; name = "accounting"; plugins = (\n'
            '  { name = "QuotaPolicyConfig"; module = "SqlUserConfig"; field = "client_address";\n'
            '    sql_query = "%s"; },\n'
            '  { name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";\n'
            '    threshold = %d; uc_threshold = "quota_count"; action = "%s"; },\n'
            '  { name = "AcctIP"; module = "Accounting"; fields = "client_address,sasl_username"; }\n'
            ') } );\n' % (port, database, extra, flush_interval, port, HOWTO_QUERY, threshold,
                         DEFER))


class SQLiteStore:
    """The embedded store: a file in the test's directory."""

    driver = "sqlite"

    def __init__(self, directory):
        self.path = os.path.join(directory, "tallyd.sqlite")
        self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=10)

    def config(self):
        return 'database = { driver = "sqlite"; path = "%s"; };\n' % self.path

    def execute(self, sql, *args):
        return self.connection.execute(sql.replace("%s", "?"), args).fetchall()

    def value(self, sql, *args):
        rows = self.execute(sql, *args)
        return rows[0][0] if rows else None

    def load_howto_tables(self):
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "db", "schema.sqlite.sql")) as f:
            self.connection.executescript(f.read())


@pytest.fixture(params=["mysql", "sqlite"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(str(tmp_path))
    else:
        s = request.getfixturevalue("db")
        s.driver = "mysql"
    s.load_howto_tables()
    return s


def add_policy(store, client, quota_json, policy_id):
    store.execute("INSERT INTO relay_policies VALUES (%s, %s, %s)", policy_id, "policy", quota_json)
    store.execute("INSERT INTO relay_hosts (client_address, relay_policy) VALUES (%s, %s)",
                  client, policy_id)


def totals(store, key, table="acct_client_address"):
    row = store.execute("SELECT count, count_rcpt, size, size_rcpt FROM %s WHERE `key` = %%s"
                        % table, key)
    return tuple(int(v) for v in row[0]) if row else None


def send_until_deferred(client, address, limit=50):
    """Messages accepted before the first deferral."""
    for accepted in range(limit):
        answer = client.ask(client_address=address)
        if answer != "dunno":
            assert answer == DEFER
            return accepted
    return limit


def test_howto_quotas_come_from_relay_policies(tallyd, store):
    add_policy(store, "2604:8d00:0:1::3", '{"quota_count":"3"}', 1)      # a JSON string
    add_policy(store, "2604:8d00:0:1::4", '{"quota_count":5}', 2)        # a JSON number
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=4), wait_port=port)
    client = PolicyClient(port=port)
    assert send_until_deferred(client, "2604:8d00:0:1::3") == 3
    assert send_until_deferred(client, "2604:8d00:0:1::4") == 5
    assert send_until_deferred(client, "198.51.100.9") == 4             # not listed: threshold
    assert client.ask(client_address="2604:8d00:0:1::3") == DEFER        # stays deferred
    daemon.ctl("flush")
    # deferred messages are not counted
    assert totals(store, "2604:8d00:0:1::3")[0] == 3
    assert totals(store, "2604:8d00:0:1::4")[0] == 5
    assert totals(store, "198.51.100.9")[0] == 4


def test_four_metrics_are_exact(tallyd, store):
    port = free_port()
    daemon = tallyd(howto_config(port, store.config()), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.10", recipient_count=3, size=1000) == "dunno"
    assert client.ask(client_address="192.0.2.11", recipient_count="", size="") == "dunno"
    daemon.ctl("flush")
    assert totals(store, "192.0.2.10") == (1, 3, 1000, 3000)
    assert totals(store, "192.0.2.11") == (1, 1, 0, 0)
    shown = daemon.ctl("show", "client_address", "192.0.2.10").stdout
    assert "size_rcpt 3000 (flushed 3000, in flight 0, pending 0)" in shown


@pytest.mark.concurrency
def test_one_new_key_from_16_connections_is_counted_exactly(tallyd, store):
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=1000000), wait_port=port)
    failures = []

    def send():
        try:
            client = PolicyClient(port=port)
            for _ in range(150):
                assert client.ask(client_address="203.0.113.77", size=10) == "dunno"
        except Exception as error:
            failures.append(error)

    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    daemon.ctl("flush")
    assert totals(store, "203.0.113.77") == (2400, 2400, 24000, 24000)


@pytest.mark.concurrency
def test_200_keys_at_once(tallyd, store):
    port = free_port()
    daemon = tallyd(howto_config(port, store.config()), wait_port=port)
    keys = ["198.18.%d.%d" % (i // 100, i % 100) for i in range(200)]

    def send(offset):
        client = PolicyClient(port=port)
        for i in range(200):
            client.ask(client_address=keys[(i + offset) % 200])

    threads = [threading.Thread(target=send, args=(n * 50,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    daemon.ctl("flush")
    assert store.value("SELECT COUNT(*) FROM acct_client_address") == 200
    assert store.value("SELECT SUM(count) FROM acct_client_address") == 800
    assert store.value("SELECT MIN(count) FROM acct_client_address") == 4


@pytest.mark.concurrency
def test_a_stop_while_the_flusher_commits_and_wakes_the_parking_lot(tallyd, store):
    """At stop the workers drain and free the parking lot while the flusher
    still commits what the drain answered, and wakes the lot after each
    commit.  A client that sends without reading keeps the drain waiting
    for it (up to 2 s) while the flusher commits every 10 ms: a lot emptied
    without its lock is a data race that ThreadSanitizer reports (and
    tallyd then exits 66 instead of 0)."""
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=10 ** 9, flush_interval=0.01),
                    wait_port=port)
    greedy = PolicyClient(port=port)
    greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.sock.setblocking(False)
    request = encode(postfix_request(client_address="192.0.2.77"))
    try:
        while True:
            greedy.sock.send(request)
    except BlockingIOError:
        pass                                        # both ends' buffers are full
    wait_for(lambda: int(daemon.stats()["requests"]) > 100, 30, "answers to the greedy client")
    assert daemon.stop() == 0, daemon.log()
    assert store.value("SELECT count FROM acct_client_address WHERE `key` = '192.0.2.77'") > 100


def test_blank_fields_are_skipped(tallyd, store):
    port = free_port()
    daemon = tallyd(howto_config(port, store.config()), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="", sasl_username="alice") == "dunno"
    assert client.ask(client_address="   ", sasl_username="") == "dunno"
    assert client.ask(client_address="192.0.2.20", sasl_username=" ") == "dunno"
    daemon.ctl("flush")
    keys = [bytes(r[0]) if isinstance(r[0], (bytes, bytearray)) else r[0].encode()
            for r in store.execute("SELECT `key` FROM acct_client_address")]
    assert keys == [b"192.0.2.20"]
    assert totals(store, "alice", "acct_sasl_username")[0] == 1
    assert store.value("SELECT COUNT(*) FROM acct_sasl_username") == 1


def test_rows_appear_after_flush_interval_not_before(tallyd, store):
    port = free_port()
    started = time.monotonic()
    daemon = tallyd(howto_config(port, store.config(), flush_interval=3), wait_port=port)
    PolicyClient(port=port).ask(client_address="192.0.2.30")
    assert time.monotonic() - started < 1.5
    time.sleep(max(0, started + 1.5 - time.monotonic()))    # half an interval after start
    assert totals(store, "192.0.2.30") is None               # not written through
    wait_for(lambda: totals(store, "192.0.2.30"), 6, "the first flush")
    assert time.monotonic() - started < 6.5                  # within two intervals


def test_sigterm_writes_every_pending_increment(tallyd, store):
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), flush_interval=3600), wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(25):
        client.ask(client_address="192.0.2.40", recipient_count=2)
    assert totals(store, "192.0.2.40") is None
    assert daemon.stop() == 0
    assert totals(store, "192.0.2.40") == (25, 50, 25000, 50000)


def test_quota_on_a_table_that_does_not_exist_sees_zero(tallyd, store):
    port = free_port()
    tallyd('listen = "127.0.0.1:%d";\n%s' % (port, store.config()) +
           'virtual_hosts = ( { port = %d; plugins = ( { name = "q"; module = "Quota"; '
           'field = "sender"; metric = "count"; threshold = 1; table_prefix = "none_"; } ); } );\n'
           % port, wait_port=port)
    assert PolicyClient(port=port).ask() == "dunno"


def test_bad_user_config_and_missing_rows_fall_back_to_defaults(tallyd, store):
    add_policy(store, "192.0.2.50", '{"quota_count": ', 1)              # broken JSON
    add_policy(store, "192.0.2.51", '["quota_count", 1]', 2)             # not an object
    add_policy(store, "192.0.2.52", '{"quota_count": null}', 3)          # null: not set
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=2), wait_port=port)
    client = PolicyClient(port=port)
    for address in ("192.0.2.50", "192.0.2.51", "192.0.2.52", "192.0.2.53"):
        assert send_until_deferred(client, address) == 2, address
    assert "is not a JSON object" in daemon.log()


def test_user_config_is_cached_for_its_ttl(tallyd, store):
    add_policy(store, "192.0.2.60", '{"quota_count":"1"}', 1)
    port = free_port()
    tallyd(howto_config(port, store.config(), threshold=100, extra="user_config_ttl = 2;\n"),
           wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.60") == "dunno"
    assert client.ask(client_address="192.0.2.60") == DEFER
    store.execute("UPDATE relay_policies SET config = %s WHERE id = 1", '{"quota_count":"10"}')
    assert client.ask(client_address="192.0.2.60") == DEFER           # still the cached 1
    wait_for(lambda: client.ask(client_address="192.0.2.60") == "dunno", 5,
             "the new quota after user_config_ttl")


def test_two_instances_on_one_database_give_exact_totals(tallyd, db):
    db.load_howto_tables()
    ports = free_port(), free_port()
    daemons = [tallyd(howto_config(p, db.config(), threshold=10 ** 6,
                                   extra='instance_id = "relay%d";\n' % i), wait_port=p)
               for i, p in enumerate(ports)]
    clients = [PolicyClient(port=p) for p in ports]
    for i in range(300):
        assert clients[i % 2].ask(client_address="192.0.2.70", size=100) == "dunno"
    for daemon in daemons:
        daemon.ctl("flush")
    assert totals(db, "192.0.2.70") == (300, 300, 30000, 30000)
    assert sorted(r[0] for r in db.execute("SELECT instance FROM tallyd_flushes")) == \
        [b"relay0", b"relay1"]


def test_database_socket_replaces_host_and_port(tallyd, db):
    """tallyd.conf(5): with `socket` set, host and port play no part, even
    host = "127.0.0.1" (the packaged value), which Connector/C alone would
    take for TCP.  The port here has nothing behind it."""
    if not db.server.socket:
        pytest.skip("the server's socket is not known (TALLYD_TEST_MYSQL_SOCKET)")
    port = free_port()
    daemon = tallyd(howto_config(port, db.config(socket='"%s"' % db.server.socket,
                                                 port=str(free_port())), threshold=10 ** 6),
                    wait_port=port)
    assert PolicyClient(port=port).ask(client_address="192.0.2.71") == "dunno"
    daemon.ctl("flush")
    assert totals(db, "192.0.2.71")[0] == 1


def test_quota_sees_what_another_instance_counted(tallyd, db):
    db.load_howto_tables()
    ports = free_port(), free_port()
    a, b = [tallyd(howto_config(p, db.config(), threshold=10).replace(
        "flush_interval = 0.2;", "flush_interval = 0.2; refresh_interval = 0.5;") +
        'instance_id = "i%d";\n' % p, wait_port=p) for p in ports]
    relay_a, relay_b = PolicyClient(port=ports[0]), PolicyClient(port=ports[1])
    assert relay_b.ask(client_address="192.0.2.80") == "dunno"    # B has the key cached: 1
    b.ctl("flush")
    # A read the month when it started, without B's row: its refresh
    # (every 0.5 s) of a key a quota reads brings B's count
    wait_for(lambda: "\ncount 1 " in a.ctl("show", "client_address", "192.0.2.80").stdout, 5,
             "A to see B's count after refresh_interval")
    for _ in range(9):                                             # A: 1 + 9 reaches 10
        assert relay_a.ask(client_address="192.0.2.80") == "dunno"
    assert relay_a.ask(client_address="192.0.2.80") == DEFER
    a.ctl("flush")
    # B still has 1 cached; its refresh (every 0.5 s) brings A's 9
    wait_for(lambda: relay_b.ask(client_address="192.0.2.80") == DEFER, 5,
             "B to see A's counts after refresh_interval")


def mtpolicyd_table(db, engine="InnoDB"):
    """The how-to's tables, with acct_client_address as mtpolicyd creates
    it: INT counters, latin1 keys compared without regard to case."""
    db.load_howto_tables()
    db.execute("DROP TABLE acct_client_address")
    db.execute("""CREATE TABLE acct_client_address (
        `id` int(11) NOT NULL AUTO_INCREMENT, `key` VARCHAR(255) NOT NULL,
        `time` VARCHAR(255) NOT NULL, `count` INT UNSIGNED NOT NULL,
        `count_rcpt` INT UNSIGNED NOT NULL, `size` INT UNSIGNED NOT NULL,
        `size_rcpt` INT UNSIGNED NOT NULL, PRIMARY KEY (`id`),
        UNIQUE KEY `time_key` (`key`, `time`), KEY(`key`), KEY(`time`)
      ) ENGINE=%s DEFAULT CHARSET=latin1""" % engine)


def test_existing_mtpolicyd_table_is_used_as_it_is(tallyd, db):
    mtpolicyd_table(db, engine="MyISAM")
    port = free_port()
    daemon = tallyd(howto_config(port, db.config()), wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(3):
        client.ask(client_address="192.0.2.90", recipient_count=2, size=7)
    daemon.ctl("flush")
    assert totals(db, "192.0.2.90") == (3, 6, 21, 42)
    assert db.value("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_NAME = "
                    "'acct_client_address' AND TABLE_SCHEMA = %s", db.name) == "MyISAM"


def test_a_key_spelled_another_way_is_the_same_client_on_mtpolicyd_tables(tallyd, db):
    """mtpolicyd's row for `relay-a.example` is the quota of `Relay-A.Example `
    too (ASCII case and trailing spaces folded), here and in the database."""
    mtpolicyd_table(db)
    month = time.strftime("%Y-%m")
    db.execute("INSERT INTO acct_client_address (`key`, time, count, count_rcpt, size, "
               "size_rcpt) VALUES ('relay-a.example', %s, 5, 5, 50, 50)", month)
    port = free_port()
    daemon = tallyd(howto_config(port, db.config(), threshold=7), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="Relay-A.Example ") == "dunno"
    assert client.ask(client_address="RELAY-A.EXAMPLE") == "dunno"
    assert client.ask(client_address="relay-a.example") == DEFER
    assert client.ask(client_address="Relay-B.Example") == "dunno"
    assert client.ask(client_address="relay-b.example  ") == "dunno"
    daemon.ctl("flush")
    assert sorted(db.execute("SELECT `key`, count FROM acct_client_address")) == \
        [("Relay-B.Example", 2), ("relay-a.example", 7)]
    assert "\ncount 2 (" in daemon.ctl("show", "client_address", "RELAY-B.example").stdout


@pytest.mark.parametrize("tables", ["mtpolicyd", "tallyd", "sqlite"])
def test_instances_see_each_others_counts_under_another_spelling(tallyd, request, tmp_path,
                                                                   tables):
    """Two instances share a client's row whatever spelling each saw first
    (MariaDB: mtpolicyd's tables and those tallyd creates; one SQLite file);
    each one's refresh reads the other's counts."""
    if tables == "sqlite":
        store = SQLiteStore(str(tmp_path))
        key_bytes = "CAST(`key` AS BLOB)"
    else:
        store = request.getfixturevalue("db")
        key_bytes = "CAST(`key` AS BINARY)"
    if tables == "mtpolicyd":
        mtpolicyd_table(store)
    ports = free_port(), free_port()
    a, b = [tallyd(howto_config(p, store.config(), threshold=6).replace(
        "flush_interval = 0.2;", "flush_interval = 0.2; refresh_interval = 0.5;") +
        'instance_id = "i%d";\n' % p, wait_port=p) for p in ports]
    relay_a, relay_b = PolicyClient(port=ports[0]), PolicyClient(port=ports[1])
    for _ in range(3):
        assert relay_a.ask(client_address="Carol.Example") == "dunno"
        assert relay_b.ask(client_address="carol.example ") == "dunno"
    a.ctl("flush")
    b.ctl("flush")
    assert [(bytes(k), int(c)) for k, c in store.execute(
        "SELECT %s, count FROM acct_client_address" % key_bytes)] in \
        ([(b"Carol.Example", 6)], [(b"carol.example ", 6)])
    for daemon, relay in ((a, relay_a), (b, relay_b)):
        wait_for(lambda: "\ncount 6 " in daemon.ctl("show", "client_address",
                                                     "CAROL.EXAMPLE").stdout, 5,
                 "each to see the other's counts after refresh_interval")
        assert relay.ask(client_address="carol.EXAMPLE") == DEFER


def test_a_key_spelled_two_ways_is_counted_once_on_every_store(tallyd, store):
    """On tallyd's own tables too: one client, one row, with the spelling
    that created it."""
    store.load_howto_tables()
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=3), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="Mixed.Case") == "dunno"
    assert client.ask(client_address="mixed.case ") == "dunno"
    assert client.ask(client_address="MIXED.CASE") == "dunno"
    assert client.ask(client_address="mixed.case") == DEFER
    daemon.ctl("flush")
    rows = [(bytes(k).decode() if isinstance(k, (bytes, bytearray)) else k, int(c))
            for k, c in store.execute("SELECT `key`, count FROM acct_client_address")]
    assert rows == [("Mixed.Case", 3)]


def test_created_tables_have_bigint_counters_and_innodb(tallyd, db):
    port = free_port()
    daemon = tallyd(howto_config(port, db.config()), wait_port=port)
    PolicyClient(port=port).ask(client_address="192.0.2.91", size=5 * 10 ** 9)
    daemon.ctl("flush")
    assert totals(db, "192.0.2.91") == (1, 1, 5 * 10 ** 9, 5 * 10 ** 9)
    columns = dict(db.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                              "WHERE TABLE_NAME = 'acct_client_address' AND TABLE_SCHEMA = %s",
                              db.name))
    assert columns["size_rcpt"] == "bigint(20) unsigned"
    assert db.value("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_NAME = "
                    "'acct_client_address' AND TABLE_SCHEMA = %s", db.name) == "InnoDB"


def test_tallyctl_takes_a_key_with_spaces_as_one_argument(tallyd, store):
    port = free_port()
    daemon = tallyd(howto_config(port, store.config()), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="k4-a") == "dunno"
    for _ in range(2):
        assert client.ask(client_address="k4-a 2026-11") == "dunno"
    daemon.ctl("flush")
    assert "\ncount 2 " in daemon.ctl("show", "client_address", "k4-a 2026-11").stdout
    assert "\ncount 1 " in daemon.ctl("show", "client_address", "k4-a").stdout
    daemon.ctl("reset", "client_address", "k4-a 2026-11")
    assert (totals(store, "k4-a 2026-11") or (0,))[0] == 0
    assert totals(store, "k4-a")[0] == 1
    refused = daemon.ctl("show", "client_address", "a\tb", check=False)
    assert refused.returncode == 2 and "tab" in refused.stderr


def test_tallyctl_refuses_a_time_its_table_cannot_have(tallyd, store):
    """A TIME that the table's time_pattern cannot give is refused, not
    shown as an empty period of its own."""
    port = free_port()
    daemon = tallyd(howto_config(port, store.config()), wait_port=port)
    assert PolicyClient(port=port).ask(client_address="192.0.2.92") == "dunno"
    now = time.strftime("%Y-%m")
    assert "\ncount 1 " in daemon.ctl("show", "client_address", "192.0.2.92", now).stdout
    for bad in ("2026-1x", "2026-11-01", "november"):
        refused = daemon.ctl("show", "client_address", "192.0.2.92", bad, check=False)
        assert refused.returncode != 0
        assert "'%s' is no time of table acct_client_address" % bad in refused.stderr + refused.stdout
        assert "%Y-%m" in refused.stderr + refused.stdout
    refused = daemon.ctl("reset", "client_address", "192.0.2.92", "2026-1x", check=False)
    assert refused.returncode != 0
    assert "\ncount 1 " in daemon.ctl("show", "client_address", "192.0.2.92").stdout


def test_keys_of_every_length_are_written_exactly(tallyd, store):
    """Flushes of short, then ever longer, then short keys again: the rows
    of each reach the database as they are."""
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=1000000), wait_port=port)
    client = PolicyClient(port=port)
    lengths = [1, 31, 32, 33, 100, 255, 7]
    for n, length in enumerate(lengths):
        key = chr(ord("a") + n) * length
        for _ in range(n + 1):
            assert client.ask(client_address=key) == "dunno"
        daemon.ctl("flush")
    for n, length in enumerate(lengths):
        assert totals(store, chr(ord("a") + n) * length)[0] == n + 1


def test_a_threshold_beyond_32_bits_is_read_as_written(tallyd, store):
    """threshold = 3000000000 (no L): Debian 12's libconfig alone wraps it to
    -1294967296, and every message was deferred."""
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=3000000000), wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(3):
        assert client.ask(client_address="192.0.2.60") == "dunno"


def test_cache_max_keys_bounds_the_cache_and_evicted_keys_keep_their_totals(tallyd, store):
    """Over cache_max_keys, keys with nothing to write leave the cache; a
    key that left is read again when a quota asks, never taken for zero."""
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=1).replace(
        "accounting = { ", "accounting = { cache_max_keys = 100; "), wait_port=port)
    client = PolicyClient(port=port)
    keys = ["198.51.100.%d" % i for i in range(1, 251)] + ["203.0.113.%d" % i for i in range(1, 51)]
    for key in keys:
        assert client.ask(client_address=key) == "dunno"
    daemon.ctl("flush")
    wait_for(lambda: int(daemon.stats()["cache_evicted"]) > 0, 15, "the housekeeping to evict")
    assert int(daemon.stats()["cache_keys"]) <= 100 + 10
    for key in keys:                           # each has sent its one allowed message
        assert client.ask(client_address=key) == DEFER
    assert "cache_max_keys (100) reached" in daemon.log()


def test_sqlite_table_with_a_key_in_two_spellings_is_logged_and_loses_nothing(tallyd, tmp_path):
    """An SQLite table from mtpolicyd or an older tallyd may hold one
    client's key in two spellings: the folded unique index cannot be made.
    tallyd says so (table and reason), writes on the exact key, and the
    client's total is what all its rows hold: nothing lost, nothing
    enforced on a part of it."""
    store = SQLiteStore(str(tmp_path))
    store.load_howto_tables()
    store.execute("DROP INDEX acct_client_address_key_folded")
    month = time.strftime("%Y-%m")
    for key, n in (("Alice@Example.org", 3), ("alice@example.org ", 4)):
        store.execute("INSERT INTO acct_client_address (`key`, time, count, count_rcpt, size, "
                      "size_rcpt) VALUES (%s, %s, %s, %s, %s, %s)", key, month, n, n, 10 * n,
                      10 * n)
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=10).replace(
        "flush_interval = 0.2;", "flush_interval = 0.2; refresh_interval = 0.3;"),
        wait_port=port)
    log = wait_for(lambda: [l for l in daemon.log().splitlines() if "two spellings" in l], 10,
                   "the refused index to be logged")
    assert "SQLite table acct_client_address: indexing folded keys: UNIQUE constraint " \
        "failed" in log[0], log
    client = PolicyClient(port=port)
    answers = [client.ask(client_address=k, size=10) for k in
               ("ALICE@example.org", "alice@example.org", "Alice@Example.org  ",
                "alice@EXAMPLE.org")]
    assert answers == ["dunno"] * 3 + [DEFER]        # 3 + 4 in the table, threshold 10
    for _ in range(4):
        assert client.ask(client_address="bob@example.org", size=10) == "dunno"
    daemon.ctl("flush")

    def alice():
        return store.execute("SELECT `key`, count, count_rcpt, size, size_rcpt FROM "
                             "acct_client_address WHERE lower(rtrim(`key`)) = "
                             "'alice@example.org'")

    assert len(alice()) == 2, alice()                # no third row for a third spelling
    assert [sum(r[i] for r in alice()) for i in range(1, 5)] == [10, 10, 100, 100]
    assert totals(store, "bob@example.org") == (4, 4, 40, 40)
    # another writer lowers one spelling's row: each refresh reads the sum
    store.execute("UPDATE acct_client_address SET count = count - 2 "
                  "WHERE `key` = 'alice@example.org '")
    wait_for(lambda: client.ask(client_address="Alice@example.org", size=10) == "dunno", 10,
             "a refresh to read both rows (8 of 10)")
    assert "\ncount 9 (" in daemon.ctl("show", "client_address", "alice@example.org").stdout
    assert daemon.stop() == 0
    assert [sum(r[i] for r in alice()) for i in range(1, 5)] == [9, 11, 110, 110]
