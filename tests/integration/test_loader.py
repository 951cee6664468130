"""test_loader.py: answers never wait for the database — through a database
that hangs, across window edges, and across a restart while the database is
away (the loader, parked requests, the snapshot; doc/architecture.md)."""
import glob
import os
import signal
import subprocess
import threading
import time

import pytest

from dbproxy import Proxy
from harness import PolicyClient, Tallyd, encode, free_port, postfix_request, preloaded, wait_for
from test_accounting import DEFER, HOWTO_QUERY, add_policy, howto_config, store, totals  # noqa: F401 (store is a fixture)

UNAVAILABLE = "defer_if_permit quota service unavailable"


def journal_config(config, directory, extra=""):
    return config.replace("accounting = { flush_interval = 0.2; };\n",
                          'accounting = { flush_interval = 0.2; journal = "%s/journal"; %s};\n'
                          % (directory, extra))


def stats(daemon):
    return daemon.stats()


def flush_when_back(daemon):
    """A flush once the daemon reaches the database again (its reconnect
    backs off for up to 5 s)."""
    wait_for(lambda: daemon.ctl("flush", check=False).returncode == 0, 30,
             "a flush after the database came back")


# ------------------------------------------------------------ restarts

@pytest.mark.concurrency
@pytest.mark.parametrize("stop", ["sigterm", "kill"])
def test_restart_while_the_database_is_down_keeps_quotas(tallyd, private_db, tmp_path, stop):
    """5 of 5 for a client, the database stops, tallyd restarts: the
    client is still deferred, from the journal's snapshot."""
    private_db.load_howto_tables()
    add_policy(private_db, "192.0.2.5", '{"quota_count":"5"}', 1)
    port = free_port()
    config = journal_config(howto_config(port, private_db.config(connect_timeout=1),
                                         threshold=100), tmp_path)
    first = tallyd(config, name="first", wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(5):
        assert client.ask(client_address="192.0.2.5") == "dunno"
    assert client.ask(client_address="192.0.2.5") == DEFER
    for _ in range(3):                    # another client, below its quota
        assert client.ask(client_address="192.0.2.6") == "dunno"
    first.ctl("flush")
    client.close()
    private_db.server.pause()
    if stop == "kill":
        first.send_signal(signal.SIGKILL)
        first.process.wait(10)
    else:
        assert first.stop() == 0
    second = tallyd(config, name="second", wait_port=port)
    assert "the snapshot knew the totals of" in second.log()
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.5") == DEFER
    for _ in range(97):                   # 3 + 97 = 100: the configured threshold
        assert client.ask(client_address="192.0.2.6") == "dunno"
    assert client.ask(client_address="192.0.2.6") == DEFER
    private_db.server.resume()
    flush_when_back(second)
    private_db.reconnect()
    assert totals(private_db, "192.0.2.5")[0] == 5
    assert totals(private_db, "192.0.2.6")[0] == 100


def test_increments_committed_after_the_snapshot_still_count_at_restart(tallyd, private_db,
                                                                         tmp_path):
    private_db.load_howto_tables()
    port = free_port()
    # a snapshot right after the first commit, then none for an hour
    config = journal_config(howto_config(port, private_db.config(connect_timeout=1),
                                         threshold=10), tmp_path,
                            extra="snapshot_interval = 3600; ")
    first = tallyd(config, name="first", wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.7") == "dunno"
    first.ctl("flush")                    # commits 1, and snapshots it
    for _ in range(8):
        assert client.ask(client_address="192.0.2.7") == "dunno"
    first.ctl("flush")                    # commits 8 more, no snapshot
    private_db.server.pause()
    first.send_signal(signal.SIGKILL)
    first.process.wait(10)
    second = tallyd(config, name="second", wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.7") == "dunno"     # the 10th
    assert client.ask(client_address="192.0.2.7") == DEFER
    private_db.server.resume()
    flush_when_back(second)
    private_db.reconnect()
    assert totals(private_db, "192.0.2.7")[0] == 10


# --------------------------------------------------------- a hung database

class TimedLoad:
    """Persistent connections sending steadily; records each answer's wait.
    `hot` keys are used before the hang; `cold` ones appear during it."""

    def __init__(self, port, connections=8, hot=200):
        self.port, self.hot = port, hot
        self.cold_from = None
        self.hot_waits, self.cold_waits, self.answers = [], [], {}
        self.errors = []
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(connections)]
        for t in self.threads:
            t.start()

    def _run(self, index):
        client = PolicyClient(port=self.port, timeout=30)
        n = 0
        while not self.stop.is_set():
            cold = self.cold_from is not None and index % 2 == 0 and n % 10 == 0
            key = "10.9.%d.%d" % (index, n) if cold else "10.8.%d.%d" % (index, n % self.hot)
            started = time.monotonic()
            try:
                client.send(encode(postfix_request(client_address=key, size=10)))
                action = client.read_answer()
            except (OSError, EOFError) as error:
                self.errors.append(error)
                return
            waited = time.monotonic() - started
            with self.lock:
                (self.cold_waits if cold else self.hot_waits).append(waited)
                self.answers[action] = self.answers.get(action, 0) + 1
            n += 1
            time.sleep(0.002)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.answers.get("dunno", 0)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else 0.0


@pytest.mark.slow
def test_hung_database_delays_only_what_it_must(tallyd, db):
    """60 s of a database that accepts and answers nothing, under load: cached
    keys answered at normal latency, every request within database.wait +
    1 s, and every increment written once when it is back."""
    db.load_howto_tables()
    proxy = Proxy(db.server.port)
    port = free_port()
    config = howto_config(port, db.config(port=str(proxy.port), connect_timeout=3,
                                          wait="1.0"), threshold=10 ** 9)
    daemon = tallyd(config, wait_port=port)
    load = TimedLoad(port)
    wait_for(lambda: len(load.hot_waits) > 3000, 20, "the hot keys to be known")
    before = percentile(load.hot_waits, 0.99)
    load.hot_waits = []
    proxy.mode = "hang"
    load.cold_from = time.monotonic()
    time.sleep(60)
    proxy.mode = None
    hung_hot, hung_cold = list(load.hot_waits), list(load.cold_waits)
    wait_for(lambda: "database reachable again" in daemon.log(), 30,
             "the database to be back (log: %s)" % daemon.log()[-2000:])
    accepted = load.finish()
    daemon.ctl("flush")
    proxy.close()
    assert load.errors == []
    assert len(hung_cold) > 50, "cold keys were asked for during the hang"
    # cold keys wait for their user config until database.wait, then go on
    assert max(hung_cold + hung_hot) < 1.0 + 1.0, "an answer took %.2f s" % max(hung_cold)
    # cached keys did not notice
    assert percentile(hung_hot, 0.99) < max(0.05, 5 * before), \
        "p99 of cached keys %.3f s during the hang, %.3f s before" % (
            percentile(hung_hot, 0.99), before)
    assert load.answers == {"dunno": accepted}
    assert db.value("SELECT SUM(count) FROM acct_client_address") == accepted
    assert int(stats(daemon)["waits_expired"]) > 0


@pytest.mark.concurrency
def test_waiting_requests_hold_no_worker(tallyd, db):
    """One worker; user configs that take the database 1 s each: other
    clients are answered meanwhile, and the slow one when its value comes."""
    db.load_howto_tables()
    add_policy(db, "192.0.2.30", '{"quota_count":"1"}', 1)
    slow = ("SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) "
            "WHERE h.client_address=? AND SLEEP(1) = 0")
    port = free_port()
    config = howto_config(port, db.config(wait="5"), threshold=1000).replace(HOWTO_QUERY, slow)
    daemon = tallyd('workers = 1;\n' + config, wait_port=port)
    waiting = PolicyClient(port=port)
    waiting.send(encode(postfix_request(client_address="192.0.2.30")))
    other = PolicyClient(port=port)
    started = time.monotonic()
    # a request that needs nothing from the database (no client address)
    assert other.ask(client_address="", sasl_username="") == "dunno"
    assert time.monotonic() - started < 0.5, "the only worker was held by a waiting request"
    assert waiting.read_answer() == "dunno"
    assert waiting.ask(client_address="192.0.2.30") == DEFER      # its quota of 1 applied
    assert int(stats(daemon)["waits"]) >= 1


@pytest.mark.concurrency
def test_reload_while_requests_wait_for_the_database(tallyd, db):
    """A waiting request keeps the configuration it began with; a reload
    meanwhile completes once it is answered, within database.wait."""
    db.load_howto_tables()
    proxy = Proxy(db.server.port)
    port = free_port()
    config = howto_config(port, db.config(port=str(proxy.port), wait="1.5"), threshold=100)
    daemon = tallyd(config, wait_port=port)
    wait_for(lambda: "rows of acct_client_address for" in daemon.log(), 10, "the month's read")
    proxy.mode = "hang"
    client = PolicyClient(port=port)
    started = time.monotonic()
    client.send(encode(postfix_request(client_address="192.0.2.60")))   # its config: unknown
    wait_for(lambda: stats(daemon)["parked"] == "1", 5, "the request to wait")
    daemon.ctl("reload")
    assert client.read_answer() == "dunno"
    assert time.monotonic() - started < 1.5 + 1
    assert "configuration" in daemon.log() and "reloaded" in daemon.log()
    assert client.ask(client_address="192.0.2.61") == "dunno"      # under the new config
    proxy.mode = None
    proxy.close()


# ----------------------------------------------------------- window edges

def count_rows(store, table="acct_client_address"):
    return store.value("SELECT COUNT(*) FROM %s" % table)


def test_every_second_is_an_edge_and_none_makes_anyone_wait(tallyd, db):
    db.load_howto_tables()
    port = free_port()
    config = howto_config(port, db.config(), threshold=10 ** 9).replace(
        'action = "defer you', 'time_pattern = "%Y-%m-%d %H:%M:%S"; action = "defer you').replace(
        'fields = "client_address,sasl_username";',
        'fields = "client_address,sasl_username"; time_pattern = "%Y-%m-%d %H:%M:%S";')
    daemon = tallyd(config, wait_port=port)
    client = PolicyClient(port=port)
    PolicyClient(port=port).ask(client_address="10.7.0.0")     # user config known
    sent = 0
    waits = int(stats(daemon)["waits"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert client.ask(client_address="10.7.0.0", size=1) == "dunno"
        sent += 1
    daemon.ctl("flush")
    assert int(stats(daemon)["waits"]) == waits, "a request waited at a second's edge"
    assert db.value("SELECT SUM(count) FROM acct_client_address") == sent + 1
    assert count_rows(db) >= 5                     # one row per second


FAKETIME_LIBRARY = next(iter(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")), None)


@pytest.mark.skipif(FAKETIME_LIBRARY is None, reason="faketime is not installed")
def test_month_edge_under_faketime(tallyd, db, tmp_path):
    """Across the turn of the month: the new month is read before its first
    second, no request waits, and each month's row holds its messages."""
    db.load_howto_tables()
    port = free_port()
    config = howto_config(port, db.config(), threshold=10 ** 9)
    # the clock starts four seconds before December; monotonic time is real,
    # and so are timed waits on it (without FAKETIME_FORCE_MONOTONIC_FIX=0,
    # libfaketime 0.9.10 ends them at once: the threads spin)
    wrapper = preloaded(str(tmp_path), "tallyd-faketime", FAKETIME_LIBRARY,
                        FAKETIME="@2026-11-30 23:59:56", FAKETIME_DONT_FAKE_MONOTONIC="1",
                        FAKETIME_FORCE_MONOTONIC_FIX="0")
    daemon = Tallyd(str(tmp_path), config, "edge", binary=str(wrapper)).start(wait_port=port)
    try:
        client = PolicyClient(port=port)
        client.ask(client_address="10.6.0.1")
        waits = int(stats(daemon)["waits"])
        wait_for(lambda: "for 2026-12" in daemon.log(), 10, "December to be read ahead")
        assert totals_for(db, "10.6.0.1", "2026-12") == 0
        sent = 1
        while not totals_for(db, "10.6.0.1", "2026-12"):
            assert client.ask(client_address="10.6.0.1") == "dunno"
            sent += 1
            if sent % 50 == 0:
                daemon.ctl("flush")
            assert sent < 100000, "the month did not turn"
        for _ in range(20):
            assert client.ask(client_address="10.6.0.1") == "dunno"
            sent += 1
        daemon.ctl("flush")
        assert int(stats(daemon)["waits"]) == waits, "a request waited at the month's edge"
        assert totals_for(db, "10.6.0.1", "2026-11") + totals_for(db, "10.6.0.1", "2026-12") \
            == sent
    finally:
        assert daemon.stop() == 0


def totals_for(store, key, month):
    return int(store.value("SELECT COALESCE(SUM(count), 0) FROM acct_client_address "
                           "WHERE `key` = %s AND `time` = %s", key, month) or 0)


# ------------------------------------------------------------ user configs

def test_preload_query_answers_every_client_from_memory(tallyd, private_db):
    private_db.load_howto_tables()
    add_policy(private_db, "192.0.2.40", '{"quota_count":"2"}', 1)
    port = free_port()
    preload = ("SELECT h.client_address, p.config FROM relay_policies p JOIN relay_hosts h "
               "ON (h.relay_policy = p.id)")
    config = howto_config(port, private_db.config(connect_timeout=1), threshold=3).replace(
        'sql_query = "', 'preload_query = "%s"; sql_query = "' % preload)
    daemon = tallyd(config, wait_port=port)
    wait_for(lambda: "preload_query: 1 user configs loaded" in daemon.log(), 10, "the preload")
    wait_for(lambda: "rows of acct_client_address for" in daemon.log(), 10, "the month's read")
    private_db.server.pause()             # from here on, nothing can be asked
    client = PolicyClient(port=port)
    assert [client.ask(client_address="192.0.2.40") for _ in range(3)] == \
        ["dunno", "dunno", DEFER]        # its quota of 2, from the mapping
    assert [client.ask(client_address="192.0.2.41") for _ in range(4)] == \
        ["dunno", "dunno", "dunno", DEFER]   # not in the mapping: the threshold
    assert int(stats(daemon)["waits"]) == 0
    private_db.server.resume()


def test_forget_applies_a_changed_policy_at_once(tallyd, store):
    add_policy(store, "192.0.2.50", '{"quota_count":"1"}', 1)
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=100,
                                 extra="user_config_ttl = 3600;\n"), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.50") == "dunno"
    assert client.ask(client_address="192.0.2.50") == DEFER
    store.execute("UPDATE relay_policies SET config = %s WHERE id = 1", '{"quota_count":"5"}')
    assert client.ask(client_address="192.0.2.50") == DEFER        # cached for an hour
    out = daemon.ctl("forget", "client_address", "192.0.2.50").stdout
    assert "forgotten" in out
    assert client.ask(client_address="192.0.2.50") == "dunno"       # 1 of 5
    assert daemon.ctl("forget", "no_such_field", "x", check=False).returncode != 0


def test_reload_reads_user_configs_afresh(tallyd, store):
    add_policy(store, "192.0.2.51", '{"quota_count":"1"}', 1)
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=100,
                                 extra="user_config_ttl = 3600;\n"), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.51") == "dunno"
    assert client.ask(client_address="192.0.2.51") == DEFER
    store.execute("UPDATE relay_policies SET config = %s WHERE id = 1", '{"quota_count":"5"}')
    daemon.ctl("reload")
    assert client.ask(client_address="192.0.2.51") == "dunno"


def test_reloads_with_new_queries_and_time_patterns_never_run_out(tallyd, store):
    """Each reload brings a new sql_query text and a new time_pattern: the
    registries drop what no config in force uses, so the 70th reload works
    like the first, and its pattern's period is read in bulk."""
    add_policy(store, "192.0.2.53", '{"quota_count":"1"}', 1)
    port = free_port()

    def config(n):
        pattern = 'time_pattern = "%%Y-%%m-r%d"; ' % n
        return howto_config(port, store.config(), threshold=100).replace(
            "WHERE h.client_address=?", "WHERE %d = %d AND h.client_address=?" % (n, n)).replace(
            'module = "Quota"; ', 'module = "Quota"; ' + pattern).replace(
            'module = "Accounting"; ', 'module = "Accounting"; ' + pattern)

    daemon = tallyd(config(0), wait_port=port)
    for n in range(1, 70):
        daemon.write_config(config(n))
        result = daemon.ctl("reload", check=False)
        assert result.returncode == 0, "reload %d: %s" % (n, result.stdout + result.stderr)
    wait_for(lambda: "rows of acct_client_address for %s-r69 " % time.strftime("%Y-%m")
             in daemon.log(), 10, "the last pattern's period read in bulk")
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.53") == "dunno"
    assert client.ask(client_address="192.0.2.53") == DEFER


@pytest.mark.concurrency
def test_refreshes_under_load_count_every_request(tallyd, store):
    """The loader re-reads the totals quotas use while workers count the
    same keys and the flusher writes them (a race there read a key's
    increments in flight while a worker replaced them; TSan's run of this
    test catches it)."""
    from test_reliability import Load, counted
    store.load_howto_tables()
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=10 ** 9).replace(
        "flush_interval = 0.2;", "flush_interval = 0.1; refresh_interval = 0.2;"),
        wait_port=port)
    load = Load(port, connections=16, keys=40)
    wait_for(lambda: load.answers.get("dunno", 0) > 4000 and
             int(daemon.stats()["loader_refreshes"]) >= 5, 60, "load across refreshes")
    accepted = load.finish()
    daemon.ctl("flush")
    assert load.failures == [] and load.doubtful == 0
    assert counted(store) == accepted


def test_stale_user_config_is_used_while_the_database_is_away(tallyd, private_db):
    private_db.load_howto_tables()
    add_policy(private_db, "192.0.2.52", '{"quota_count":"3"}', 1)
    port = free_port()
    daemon = tallyd(howto_config(port, private_db.config(connect_timeout=1), threshold=100,
                                 extra="user_config_ttl = 1;\n"), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.52") == "dunno"
    private_db.server.pause()
    time.sleep(1.5)                       # past its ttl
    started = time.monotonic()
    assert client.ask(client_address="192.0.2.52") == "dunno"       # 2 of 3, stale config
    assert client.ask(client_address="192.0.2.52") == "dunno"
    assert client.ask(client_address="192.0.2.52") == DEFER
    assert time.monotonic() - started < 0.5
    private_db.server.resume()


@pytest.mark.concurrency
def test_user_configs_of_many_new_clients_are_read_in_batches(tallyd, store):
    for i in range(50):
        add_policy(store, "192.0.3.%d" % i, '{"quota_count":"%d"}' % (i + 1), i + 1)
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), threshold=1000), wait_port=port)
    answers = {}

    def send(i):
        client = PolicyClient(port=port)
        answers[i] = [client.ask(client_address="192.0.3.%d" % i) for _ in range(i + 2)]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(50):                    # quota i + 1: the (i + 2)th is deferred
        assert answers[i] == ["dunno"] * (i + 1) + [DEFER], i
    s = stats(daemon)
    assert int(s["loader_user_configs"]) >= 50
    assert int(s["loader_batches"]) < 50 * 2, "configs were read one statement each"
