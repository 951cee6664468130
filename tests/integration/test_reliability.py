"""test_reliability.py: nothing lost, nothing counted twice, no bad input
gets through (doc/reliability.md says which promise each test checks)."""
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from harness import PolicyClient, build_preload, encode, free_port, postfix_request, preloaded, wait_for
from dbproxy import Proxy
from test_accounting import howto_config, mtpolicyd_table, totals
from test_core import raise_file_limit


class Load:
    """Clients sending steadily on persistent connections, counting what was
    answered; `doubtful` counts requests sent but never answered."""

    def __init__(self, port, connections=8, keys=50, pause=0.0, new_key_every=0):
        self.port, self.keys, self.pause, self.new_key_every = port, keys, pause, new_key_every
        self.answers, self.doubtful, self.failures, self.slowest = {}, 0, [], 0.0
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(connections)]
        for t in self.threads:
            t.start()

    def _run(self, index):
        try:
            client = PolicyClient(port=self.port)
        except OSError as error:
            self.failures.append(error)
            return
        n = 0
        while not self.stop.is_set():
            if self.new_key_every and n % self.new_key_every == 0:
                key = "10.200.%d.%d" % (index, n // self.new_key_every % 250)   # never loaded
            else:
                key = "10.100.%d.%d" % (index, n % self.keys)
            started = time.monotonic()
            try:
                client.send(encode(postfix_request(client_address=key, size=10)))
                action = client.read_answer()
            except (OSError, EOFError):
                with self.lock:
                    self.doubtful += 1
                return
            with self.lock:
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answers[action] = self.answers.get(action, 0) + 1
            n += 1
            if self.pause:
                time.sleep(self.pause)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.answers.get("dunno", 0)


def counted(store):
    return int(store.value("SELECT COALESCE(SUM(count), 0) FROM acct_client_address") or 0)


UNAVAILABLE = "defer_if_permit quota service unavailable"


def with_on_db_error(config):
    return config.replace('action = "defer you',
                          'on_db_error = "%s"; action = "defer you' % UNAVAILABLE)


@pytest.mark.slow
def test_database_outage_loses_nothing_and_answers_from_memory(tallyd, private_db):
    private_db.load_howto_tables()
    port = free_port()
    daemon = tallyd(with_on_db_error(howto_config(port, private_db.config(connect_timeout=2),
                                                  threshold=10 ** 9)), wait_port=port)
    load = Load(port, pause=0.002, new_key_every=200)
    wait_for(lambda: load.answers.get("dunno", 0) > 500, 10, "load before the outage")
    private_db.server.pause()
    wait_for(lambda: "database unreachable" in daemon.log(), 15, "the outage to be noticed")
    time.sleep(30)                        # the outage itself, with load running
    private_db.server.resume()
    wait_for(lambda: "database reachable again" in daemon.log(), 30, "the end of the outage")
    accepted = load.finish()
    daemon.ctl("flush")
    private_db.reconnect()
    assert load.failures == [] and load.doubtful == 0
    assert load.slowest < 1, "a request waited %.1f s" % load.slowest
    # the month was read in full before the outage: new clients are known
    # to have sent nothing, and their user configs were known to be absent
    # or are used stale, so nothing needed the database
    assert load.answers == {"dunno": accepted}
    assert counted(private_db) == accepted
    log = daemon.log()
    assert log.count("database unreachable") == 1
    assert log.count("database reachable again") == 1


def test_the_outage_log_counts_a_key_pending_and_in_flight_once(tallyd, private_db):
    """One client: its increments of a failed flush are in flight, newer
    ones pending; the end of the outage speaks of 1 key, not 2."""
    port = free_port()
    daemon = tallyd('listen = "127.0.0.1:%d";\n%s'
                    'accounting = { flush_interval = 0.2; };\n'
                    'virtual_hosts = ( { port = %d; name = "a"; plugins = (\n'
                    '  { name = "A"; module = "Accounting"; fields = "client_address"; } ) } );\n'
                    % (port, private_db.config(connect_timeout=2), port), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.61") == "dunno"
    daemon.ctl("flush")
    private_db.server.pause()
    assert client.ask(client_address="192.0.2.61") == "dunno"
    wait_for(lambda: daemon.stats().get("in_flight_keys") == "1", 15,
             "a flush that failed with the key in flight")
    assert client.ask(client_address="192.0.2.61") == "dunno"
    wait_for(lambda: daemon.stats().get("pending_keys") == "1", 5, "the key pending too")
    private_db.server.resume()
    wait_for(lambda: "database reachable again" in daemon.log(), 30, "the end of the outage")
    assert "writing the 1 keys' increments" in daemon.log(), daemon.log()
    daemon.ctl("flush")
    private_db.reconnect()
    assert totals(private_db, "192.0.2.61")[0] == 3


def test_started_with_the_database_refusing_answers_on_db_error_at_once(tallyd, private_db):
    private_db.load_howto_tables()
    port = free_port()
    config = with_on_db_error(howto_config(port, private_db.config(connect_timeout=2),
                                           threshold=10 ** 9))
    private_db.server.pause()
    daemon = tallyd(config, wait_port=port)
    client = PolicyClient(port=port)
    started = time.monotonic()
    assert client.ask(client_address="192.0.2.50") == UNAVAILABLE
    assert time.monotonic() - started < 2, "a refusing database is not waited for"
    assert "database unreachable" in daemon.log()
    assert "is not known: the database cannot be reached" in daemon.log()
    private_db.server.resume()
    # back: the loader reads the month, and the client is known again
    wait_for(lambda: client.ask(client_address="192.0.2.50") == "dunno", 20,
             "answers from the database once it is back")


@pytest.mark.parametrize("mode", ["insert", "commit", "commit-reply"])
@pytest.mark.concurrency
def test_flush_cut_at_any_point_is_applied_once(tallyd, db, mode):
    db.load_howto_tables()
    proxy = Proxy(db.server.port, mode=mode, every=2)
    port = free_port()
    daemon = tallyd(howto_config(port, db.config(port=str(proxy.port)), threshold=10 ** 9,
                                 flush_interval=0.05), wait_port=port)
    load = Load(port, keys=20)
    wait_for(lambda: proxy.cuts >= 10, 30, "ten cut flushes (%s)" % mode)
    accepted = load.finish()
    proxy.mode = None                     # let the last flushes through
    # a cut decided just before may still hit the next flush: wait for one
    # that gets through
    wait_for(lambda: daemon.ctl("flush", check=False).returncode == 0, 15,
             "a flush after the cuts")
    proxy.close()
    assert load.failures == [] and load.doubtful == 0
    assert counted(db) == accepted
    if mode == "commit":
        assert "was committed before the connection broke" in daemon.log()


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing(tallyd, db, tmp_path):
    db.load_howto_tables()
    port = free_port()
    journal = 'accounting = { flush_interval = 0.5; journal = "%s/journal"; };\n' % tmp_path
    config = howto_config(port, db.config(), threshold=10 ** 9).replace(
        "accounting = { flush_interval = 0.2; };\n", journal)
    daemon = tallyd(config, name="first", wait_port=port)
    load = Load(port, connections=8)
    wait_for(lambda: load.answers.get("dunno", 0) > 5000, 30, "load before the crash")
    daemon.send_signal(9)
    daemon.process.wait(10)
    accepted = load.finish()
    restarted = tallyd(config, name="second", wait_port=port)
    restarted.ctl("flush")
    assert "increments read back" in restarted.log()
    # an increment is journaled before its answer: requests cut by the crash
    # may be counted without having been answered (at most one per connection)
    assert accepted <= counted(db) <= accepted + load.doubtful
    assert load.doubtful <= 8


def test_stopping_with_the_database_down_keeps_increments_in_the_journal(tallyd, private_db,
                                                                         tmp_path):
    private_db.load_howto_tables()
    port = free_port()
    journal = 'accounting = { flush_interval = 3600; journal = "%s/journal"; };\n' % tmp_path
    config = howto_config(port, private_db.config(connect_timeout=1), threshold=10 ** 9).replace(
        "accounting = { flush_interval = 0.2; };\n", journal)
    daemon = tallyd(config, name="first", wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(40):
        assert client.ask(client_address="192.0.2.100", recipient_count=3) == "dunno"
    private_db.server.pause()
    assert daemon.stop() == 0
    assert "stay in the journal for the next start" in daemon.log()
    private_db.server.resume()
    restarted = tallyd(config, name="second", wait_port=port)
    restarted.ctl("flush")
    private_db.reconnect()
    assert totals(private_db, "192.0.2.100") == (40, 120, 40000, 120000)


HOSTILE = [b"o'brien@example.org", b'say "hi"@example.org', b"back\\slash", b"100%_sure",
           b"'; DROP TABLE acct_sender; --", b"caf\xc3\xa9@example.org", b"\xff\xfe\x80binary",
           b"x" * 255]


@pytest.mark.parametrize("driver", ["mysql", "sqlite"])
def test_hostile_keys_are_stored_verbatim(tallyd, request, tmp_path, driver):
    if driver == "mysql":
        store = request.getfixturevalue("db")
        database = store.config()
    else:
        import sqlite3
        path = str(tmp_path / "t.sqlite")
        database = 'database = { path = "%s"; };\n' % path
    port = free_port()
    daemon = tallyd('listen = "127.0.0.1:%d";\n%saccounting = { flush_interval = 0.2; };\n'
                    'virtual_hosts = ( { port = %d; plugins = ( { name = "a"; module = "Accounting"; '
                    'fields = "sender"; } ); } );\n' % (port, database, port), wait_port=port)
    client = PolicyClient(port=port)
    for key in HOSTILE + [b"y" * 256]:
        client.send(b"request=smtpd_access_policy\nsender=" + key + b"\n\n")
        assert client.read_answer() == "dunno"
    daemon.ctl("flush")
    if driver == "mysql":
        rows = store.execute("SELECT CAST(`key` AS BINARY), count FROM acct_sender")
    else:
        rows = sqlite3.connect(path).execute(
            "SELECT CAST(`key` AS BLOB), count FROM acct_sender").fetchall()
    stored = {bytes(k): c for k, c in rows}
    assert stored == {**{key: 1 for key in HOSTILE}, long_form(b"y" * 256): 1}


def long_form(value):
    """The key tallyd counts a value over 255 bytes under (metrics.h)."""
    return value[:222] + b"\n" + hashlib.sha256(value).hexdigest()[:32].encode()


@pytest.mark.parametrize("driver", ["mysql", "sqlite"])
def test_long_keys_are_counted_apart_and_enforced(tallyd, request, tmp_path, driver):
    """Senders over 255 bytes that share their first 222 are counted apart,
    under their long form, and a quota on them holds."""
    if driver == "mysql":
        store = request.getfixturevalue("db")
        database = store.config()
    else:
        from test_accounting import SQLiteStore
        store = SQLiteStore(str(tmp_path))
        database = store.config()
    port = free_port()
    daemon = tallyd('listen = "127.0.0.1:%d";\n%saccounting = { flush_interval = 0.2; };\n'
                    'virtual_hosts = ( { port = %d; plugins = (\n'
                    '  { name = "q"; module = "Quota"; field = "sender"; metric = "count";\n'
                    '    threshold = 2; action = "defer over"; },\n'
                    '  { name = "a"; module = "Accounting"; fields = "sender"; } ); } );\n'
                    % (port, database, port), wait_port=port)
    client = PolicyClient(port=port)
    one, other = b"a" * 300 + b"@example.org", b"a" * 300 + b"@example.net"
    answers = []
    for sender in (one, one, one, other):
        client.send(b"request=smtpd_access_policy\nsender=" + sender + b"\n\n")
        answers.append(client.read_answer())
    assert answers == ["dunno", "dunno", "defer over", "dunno"]
    daemon.ctl("flush")
    rows = dict((bytes(k), c) for k, c in store.execute(
        "SELECT %s, count FROM acct_sender" % ("CAST(`key` AS BINARY)" if driver == "mysql" else
                                                "CAST(`key` AS BLOB)")))
    assert rows == {long_form(one): 2, long_form(other): 1}
    shown = daemon.ctl("show", "sender", one.decode()).stdout
    assert "\ncount 2 " in shown
    # one line per field: the newline in the long form is shown escaped
    assert "\nkey %s\n" % long_form(one).decode().replace("\n", "\\n") in shown


@pytest.mark.slow
@pytest.mark.concurrency
def test_idle_and_slow_clients_do_not_stop_service(tallyd):
    raise_file_limit(11000)
    port = free_port()
    tallyd('listen = "127.0.0.1:%d"; max_connections = 8000;\n' % port +
           'virtual_hosts = ( { port = %d; plugins = ( { name = "a"; module = "Action"; '
           'action = "OK"; } ); } );\n' % port, wait_port=port)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5000)]
    stop = threading.Event()

    def drip():
        s = socket.create_connection(("127.0.0.1", port))
        data = encode(postfix_request())
        for i in range(len(data)):
            if stop.is_set():
                break
            s.send(data[i:i + 1])
            time.sleep(0.05)
        s.close()

    drippers = [threading.Thread(target=drip) for _ in range(50)]
    for t in drippers:
        t.start()
    slowest = 0.0
    for _ in range(300):
        started = time.monotonic()
        client = PolicyClient(port=port, timeout=5)
        assert client.ask() == "OK"
        client.close()
        slowest = max(slowest, time.monotonic() - started)
    stop.set()
    for t in drippers:
        t.join()
    for s in idle:
        s.close()
    assert slowest < 1.0, "a client waited %.2f s" % slowest


def refuse_long_keys(store, driver):
    """Makes the store refuse a row whose key is longer than 16 bytes, as an
    mtpolicyd table with a narrow key column does (a data error)."""
    if driver == "mysql":
        store.execute("ALTER TABLE acct_client_address MODIFY `key` VARCHAR(16) NOT NULL")
    else:
        store.execute("CREATE TRIGGER refuse_long BEFORE INSERT ON acct_client_address "
                      "WHEN length(NEW.`key`) > 16 BEGIN SELECT RAISE(ABORT, 'key too long'); END")


def accept_long_keys(store, driver):
    if driver == "mysql":
        store.execute("ALTER TABLE acct_client_address MODIFY `key` VARBINARY(255) NOT NULL")
    else:
        store.execute("DROP TRIGGER refuse_long")


@pytest.mark.parametrize("driver", ["mysql", "sqlite"])
def test_a_refused_row_holds_back_no_other_and_is_written_later(tallyd, request, tmp_path,
                                                                driver):
    """One row the database refuses is set aside, logged and counted; the
    others are written; it stays pending across a kill -9 (the journal) and
    is written once the database takes it."""
    if driver == "mysql":
        store = request.getfixturevalue("db")
        store.load_howto_tables()
        database = store.config()
    else:
        from test_accounting import SQLiteStore
        store = SQLiteStore(str(tmp_path))
        store.load_howto_tables()
        database = store.config()
    refuse_long_keys(store, driver)
    port = free_port()
    journal = 'accounting = { flush_interval = 3600; journal = "%s/journal"; };\n' % tmp_path
    config = howto_config(port, database, threshold=10 ** 6).replace(
        "accounting = { flush_interval = 0.2; };\n", journal)
    daemon = tallyd(config, name="first", wait_port=port)
    client = PolicyClient(port=port)
    long_key = "a-client-with-a-long-name.example.org"
    for key, times in (("192.0.2.1", 2), (long_key, 3), ("192.0.2.2", 1)):
        for _ in range(times):
            assert client.ask(client_address=key) == "dunno"
    daemon.ctl("flush")
    assert totals(store, "192.0.2.1")[0] == 2 and totals(store, "192.0.2.2")[0] == 1
    assert totals(store, long_key) is None
    stats = daemon.stats()
    assert int(stats["flush_rows_refused"]) >= 1 and stats["flush_failures"] == "0"
    assert "refused the row of %s" % long_key in daemon.log()
    assert "\ncount 3 " in daemon.ctl("show", "client_address", long_key).stdout
    # still refused at the next flush, with more increments; then a crash
    assert client.ask(client_address=long_key) == "dunno"
    assert client.ask(client_address="192.0.2.1") == "dunno"
    daemon.ctl("flush")
    assert totals(store, "192.0.2.1")[0] == 3
    daemon.send_signal(9)
    daemon.process.wait(10)
    accept_long_keys(store, driver)
    restarted = tallyd(config, name="second", wait_port=port)
    restarted.ctl("flush")
    assert totals(store, long_key)[0] == 4
    assert totals(store, "192.0.2.1")[0] == 3 and totals(store, "192.0.2.2")[0] == 1


@pytest.mark.parametrize("driver", ["mysql", "sqlite"])
def test_a_saturated_metric_stops_at_its_column_and_blocks_nothing(tallyd, request, tmp_path,
                                                                   driver):
    """size=2^64-1 from a client fills its total to what the column holds
    (BIGINT UNSIGNED in tallyd's tables, BIGINT in SQLite) and no flush fails."""
    if driver == "mysql":
        store = request.getfixturevalue("db")
        top = 2 ** 64 - 1
    else:
        from test_accounting import SQLiteStore
        store = SQLiteStore(str(tmp_path))
        top = 2 ** 63 - 1
    store.load_howto_tables()
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=10 ** 6), wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(2):
        assert client.ask(client_address="192.0.2.7", size=2 ** 64 - 1) == "dunno"
        assert client.ask(client_address="192.0.2.8", size=10) == "dunno"
        daemon.ctl("flush")
    assert totals(store, "192.0.2.7") == (2, 2, top, top)
    assert totals(store, "192.0.2.8") == (2, 2, 20, 20)
    assert daemon.stats()["flush_failures"] == "0"


def test_mtpolicyd_int_columns_stop_at_their_limit(tallyd, db):
    """mtpolicyd's INT UNSIGNED columns: a total that would pass 2^32 - 1
    stops there, and the other rows are written."""
    mtpolicyd_table(db)
    port = free_port()
    daemon = tallyd(howto_config(port, db.config(), threshold=10 ** 6), wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(2):
        assert client.ask(client_address="192.0.2.9", size=3 * 10 ** 9) == "dunno"
        assert client.ask(client_address="192.0.2.10", size=10) == "dunno"
        daemon.ctl("flush")
    assert totals(db, "192.0.2.9") == (2, 2, 2 ** 32 - 1, 2 ** 32 - 1)
    assert totals(db, "192.0.2.10") == (2, 2, 20, 20)
    assert daemon.stats()["flush_failures"] == "0"
    assert "acct_client_address.size holds at most 4294967295" in daemon.log()


def test_flusher_starts_a_new_session_after_an_sql_error(tallyd, private_db):
    """MariaDB keeps a session's database privileges from its start: after a
    REVOKE and a GRANT, flushes work again only on a new session."""
    server = private_db.server
    private_db.load_howto_tables()
    server.root("CREATE USER 'limited'@'127.0.0.1' IDENTIFIED BY 'limited';"
                "GRANT ALL ON tallyd.* TO 'limited'@'127.0.0.1';")
    port = free_port()
    config = howto_config(port, private_db.config(user='"limited"', password='"limited"'),
                          threshold=10 ** 6).replace("flush_interval = 0.2", "flush_interval = 0.5")
    daemon = tallyd(config, wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.30") == "dunno"
    daemon.ctl("flush")
    server.root("REVOKE INSERT, UPDATE ON tallyd.* FROM 'limited'@'127.0.0.1';")
    ids = server.root("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'limited'")
    for pid in ids.stdout.split()[1:]:
        server.root("KILL %s" % pid)           # new sessions, without INSERT
    assert client.ask(client_address="192.0.2.30") == "dunno"
    wait_for(lambda: "command denied" in daemon.ctl("stats").stdout, 10,
             "a flush refused for want of INSERT")
    server.root("GRANT ALL ON tallyd.* TO 'limited'@'127.0.0.1';")
    assert client.ask(client_address="192.0.2.30") == "dunno"
    wait_for(lambda: daemon.ctl("flush", check=False).returncode == 0, 10,
             "a flush on a session with the privileges back")
    assert totals(private_db, "192.0.2.30")[0] == 3


@pytest.mark.parametrize("driver", ["mysql", "sqlite"])
def test_a_flush_waits_for_a_lock_longer_than_connect_timeout(tallyd, request, tmp_path, driver):
    """Another session holds the row (MariaDB) or the file (SQLite) for 3 s
    while connect_timeout is 1: the flush waits (statement_timeout) instead
    of being cut, and nothing fails."""
    if driver == "mysql":
        store = request.getfixturevalue("db")
        database = store.config(connect_timeout="1")
        locker = store.server.connect(store.name)
    else:
        import sqlite3
        from test_accounting import SQLiteStore
        store = SQLiteStore(str(tmp_path))
        database = store.config().replace("};", "connect_timeout = 1; };")
        locker = sqlite3.connect(store.path, isolation_level=None, timeout=10,
                                 check_same_thread=False)
    store.load_howto_tables()
    port = free_port()
    daemon = tallyd(howto_config(port, database, threshold=10 ** 6).replace(
        "flush_interval = 0.2", "flush_interval = 3600"), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.40") == "dunno"
    daemon.ctl("flush")
    assert client.ask(client_address="192.0.2.40") == "dunno"
    if driver == "mysql":
        cursor = locker.cursor()
        cursor.execute("BEGIN")
        cursor.execute("SELECT count FROM acct_client_address WHERE `key` = '192.0.2.40' "
                       "FOR UPDATE")
    else:
        locker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(3.0, lambda: locker.commit() if driver == "mysql"
                              else locker.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    daemon.ctl("flush")                       # waits for the lock; fails if cut
    assert time.monotonic() - started >= 2.5
    release.join()
    assert totals(store, "192.0.2.40")[0] == 2
    assert daemon.stats()["flush_failures"] == "0"
    locker.close()


def journal_batches(data):
    """(offset, payload length) of each batch of a journal segment."""
    batches, p = [], 16                        # the segment header
    while p + 16 <= len(data):
        length = struct.unpack_from("<I", data, p)[0]
        batches.append((p, length))
        p += 16 + length
    return batches


def test_journal_damage_is_skipped_and_a_stray_segment_set_aside(tallyd, db, tmp_path):
    """Bytes flipped in the middle of a segment lose only their batch (the
    batches after it are read), and an empty segment file (what a power cut
    without journal_sync can leave) is set aside: tallyd starts."""
    db.load_howto_tables()
    port = free_port()
    directory = tmp_path / "journal"
    journal = 'accounting = { flush_interval = 3600; journal = "%s"; };\n' % directory
    config = howto_config(port, db.config(), threshold=10 ** 6).replace(
        "accounting = { flush_interval = 0.2; };\n", journal)
    daemon = tallyd(config, name="first", wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(10):                        # one after the other: a batch each
        assert client.ask(client_address="192.0.2.70") == "dunno"
    daemon.send_signal(9)
    daemon.process.wait(10)
    newest = sorted(p for p in directory.iterdir() if "." not in p.name)[-1]
    data = bytearray(newest.read_bytes())
    batches = journal_batches(data)
    assert len(batches) >= 11                  # the base's snapshot, then ten requests
    offset, length = batches[-8]
    data[offset + 16 + length // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    (directory / "segment-9999999999999999").write_bytes(b"")
    restarted = tallyd(config, name="second", wait_port=port)
    restarted.ctl("flush")
    assert totals(db, "192.0.2.70")[0] == 9
    log = restarted.log()
    assert "damaged bytes at byte" in log and "the batches after them are read" in log
    assert "set aside as" in log
    assert (directory / "segment-9999999999999999.damaged").exists()


@pytest.mark.parametrize("fault", ["short", "enospc", "eio"])
def test_a_failing_journal_disk_breaks_no_later_record(tallyd, db, tmp_path, fault):
    """The journal's disk refuses writes for a while (a write cut short, then
    ENOSPC; or ENOSPC, or EIO, at once): answers go on, the failure is counted,
    flushes wait (an intent not on disk could let a crash count a batch
    twice), and the segment is cut back to its last whole batch, so what is
    journaled after the disk recovers is read back intact after a kill -9."""
    db.load_howto_tables()
    port = free_port()
    control = tmp_path / "fault"
    binary = preloaded(str(tmp_path), "tallyd-faultfs", build_preload(str(tmp_path), "faultfs"),
                       FAULTFS_MATCH="/journal/segment-", FAULTFS_CONTROL=str(control))
    journal = 'accounting = { flush_interval = 3600; journal = "%s/journal"; };\n' % tmp_path
    config = howto_config(port, db.config(), threshold=10 ** 6).replace(
        "accounting = { flush_interval = 0.2; };\n", journal)
    daemon = tallyd(config, name="first", binary=binary, wait_port=port)
    client = PolicyClient(port=port)
    ask = lambda: client.ask(client_address="192.0.2.80") == "dunno"
    assert all(ask() for _ in range(3))
    control.write_text(fault)
    assert all(ask() for _ in range(3))        # answered, in memory only
    assert int(daemon.stats()["journal_write_failures"]) >= 1
    assert daemon.ctl("flush", check=False).returncode != 0
    assert "journal: write failed" in daemon.log()
    control.write_text("ok")
    assert all(ask() for _ in range(3))
    daemon.send_signal(9)
    daemon.process.wait(10)
    restarted = tallyd(config, name="second", wait_port=port)
    restarted.ctl("flush")
    assert totals(db, "192.0.2.80")[0] == 6    # the three in memory only died with it
    assert "damaged bytes" not in restarted.log()


@pytest.mark.parametrize("sync", [True, False])
def test_journal_sync_syncs_the_directory_after_renames_and_unlinks(tallyd, db, tmp_path, sync):
    """With journal_sync a segment created or deleted is durable only once
    its directory is fsynced too; without it nothing is synced."""
    db.load_howto_tables()
    port = free_port()
    synced = tmp_path / "fsynced"
    binary = preloaded(str(tmp_path), "tallyd-faultfs", build_preload(str(tmp_path), "faultfs"),
                       FAULTFS_FSYNC_LOG=str(synced))
    journal = ('accounting = { flush_interval = 3600; journal = "%s/journal"; '
               'journal_sync = %s; };\n' % (tmp_path, "true" if sync else "false"))
    config = howto_config(port, db.config(), threshold=10 ** 6).replace(
        "accounting = { flush_interval = 0.2; };\n", journal)
    daemon = tallyd(config, binary=binary, wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(3):
        assert client.ask(client_address="192.0.2.81") == "dunno"
        daemon.ctl("flush")                     # rotates: a new segment, old ones go
    lines = synced.read_text().splitlines() if synced.exists() else []
    if sync:
        assert lines.count("%s/journal" % tmp_path) >= 3, lines
    else:
        assert lines == []


def test_stopping_with_a_hung_database_takes_twice_connect_timeout(tallyd, db, tmp_path):
    """The flusher's statements may take statement_timeout (60 s here); a
    stop gives up on a database that answers nothing after 2 ×
    connect_timeout, and the increments stay in the journal."""
    db.load_howto_tables()
    proxy = Proxy(db.server.port)
    port = free_port()
    journal = 'accounting = { flush_interval = 0.2; journal = "%s/journal"; };\n' % tmp_path
    database = db.config(port=str(proxy.port), connect_timeout=1, statement_timeout=60)
    config = howto_config(port, database, threshold=10 ** 6).replace(
        "accounting = { flush_interval = 0.2; };\n", journal)
    daemon = tallyd(config, name="first", wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.82") == "dunno"
    wait_for(lambda: daemon.stats()["flushes"] != "0", 5, "a flush: the connection is open")
    proxy.mode = "hang"
    assert client.ask(client_address="192.0.2.82") == "dunno"
    wait_for(lambda: daemon.stats()["pending_keys"] == "0", 5, "the flusher to take it")
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 2 * 1 + 3
    assert "cutting its statement off" in daemon.log()
    assert "stay in the journal for the next start" in daemon.log()
    restarted = tallyd(config.replace(str(proxy.port), str(db.server.port)), name="second",
                       wait_port=port)
    restarted.ctl("flush")
    assert totals(db, "192.0.2.82")[0] == 2
    proxy.close()
