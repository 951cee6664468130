"""test_galera.py: a relay fleet on a MariaDB Galera cluster — three tallyd
instances, each on its own node of a 3-node cluster on this machine
(tests/lib/galera.sh), driven with the same keys at once.

The cluster is the one tests/run-all started (TALLYD_TEST_GALERA_DIR) or
one of this module's own.  Skipped, with the reason, where galera-4,
wsrep_sst_rsync and the user mysql (Debian's mariadb-server) or root is
missing.  TALLYD_GALERA_REQUESTS sets the load (tallyd-bench requests per
instance, 120,000: about 15 s on two cores).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from harness import TALLYD, PolicyClient, Tallyd, free_port, wait_for
from test_identity import refused

pytestmark = pytest.mark.galera

LIB = os.path.join(os.path.dirname(__file__), "..", "lib", "galera.sh")
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
FLUSH_INTERVAL = 0.2


def missing():
    """Why this machine cannot run a Galera cluster, or None."""
    if not os.path.exists(PROVIDER):
        return "galera-4 is not installed (%s)" % PROVIDER
    for tool, package in (("mariadbd", "mariadb-server-core"), ("rsync", "rsync"),
                          ("wsrep_sst_rsync", "mariadb-server")):
        if shutil.which(tool) is None:
            return "%s is not installed (Debian: %s)" % (tool, package)
    try:
        import pwd
        pwd.getpwnam("mysql")
    except KeyError:
        return "there is no user mysql for the nodes to run as (Debian: mariadb-server)"
    if os.geteuid() != 0:
        return "a Galera cluster for tests is started as root (its nodes run as mysql)"
    return None


def galera(*args, check=True):
    """Runs a tests/lib/galera.sh function."""
    result = subprocess.run(["bash", "-c", '. "$0"; "$@"', LIB, *args],
                            capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError("galera.sh %s failed:\n%s%s" % (" ".join(args), result.stdout,
                                                             result.stderr))
    return result


class Cluster:
    def __init__(self, directory, own):
        self.directory, self.own = directory, own
        self.ports = {}
        with open(os.path.join(directory, "env")) as f:
            for line in f:
                name, value = line.strip().split("=", 1)
                if name.startswith("GALERA_PORT_"):
                    self.ports[int(name[-1])] = int(value)

    def connect(self, node, database=None):
        import pymysql
        return pymysql.connect(host="127.0.0.1", port=self.ports[node], user="tallyd",
                               password="tallyd", database=database, autocommit=True,
                               connect_timeout=5)

    def execute(self, node, sql, database=None):
        connection = self.connect(node, database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            connection.close()

    def kill(self, node):
        galera("galera_kill", self.directory, str(node))

    def restart(self, node):
        galera("galera_restart", self.directory, str(node))

    def synced(self):
        galera("galera_wait_synced", self.directory)


@pytest.fixture(scope="module")
def cluster():
    reason = missing()
    if reason:
        pytest.skip(reason)
    given = os.environ.get("TALLYD_TEST_GALERA_DIR")
    if given:
        yield Cluster(given, False)
        return
    directory = tempfile.mkdtemp(prefix="tallyd-galera-", dir="/tmp")
    try:
        galera("galera_start", directory)
        yield Cluster(directory, True)
    finally:
        galera("galera_stop", directory, check=False)


@pytest.fixture
def database(cluster):
    """A fresh database on the cluster; every node restarted by the test is
    synced again before the next one.  Tests ask for it before `tallyd`, so
    that their daemons stop before it is dropped."""
    name = "g_" + uuid.uuid4().hex[:12]
    cluster.execute(1, "CREATE DATABASE " + name)
    yield name
    cluster.synced()
    cluster.execute(1, "DROP DATABASE " + name)


def relay_config(port, node_port, database, instance, extra="", journal=None):
    """instance None: no instance_id, the one kept in `journal` is used."""
    return ('listen = "127.0.0.1:%d";\n%s'
            'database = { driver = "mysql"; host = "127.0.0.1"; port = %d; user = "tallyd"; '
            'password = "tallyd"; name = "%s"; connect_timeout = 3; };\n'
            'accounting = { flush_interval = %s; flush_batch = 10; refresh_interval = 1.0;%s };\n'
            '%s'
            'virtual_hosts = ( { port = %d; name = "relay"; plugins = (\n'
            '  { name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";\n'
            '    threshold = 1000000000; action = "defer over quota"; },\n'
            '  { name = "AcctIP"; module = "Accounting"; fields = "client_address"; }\n'
            ') } );\n' % (port, 'instance_id = "%s";\n' % instance if instance else "",
                           node_port, database, FLUSH_INTERVAL,
                           ' journal = "%s";' % journal if journal else "", extra, port))


def control_stats(daemon):
    """tallyctl stats over the control socket, without a process per call."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(daemon.control)
        s.sendall(b"stats\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.decode().splitlines():
        words = line.split(" ", 1)
        if len(words) == 2:
            out[words[0]] = words[1]
    return out


class FlushWatch(threading.Thread):
    """Polls each instance's committed flushes every 50 ms and keeps the
    longest time any of them went without one."""

    def __init__(self, daemons):
        super().__init__(daemon=True)
        self.daemons = daemons
        self.stop_event = threading.Event()
        self.worst = [0.0] * len(daemons)

    def run(self):
        last = [None] * len(self.daemons)
        since = [time.monotonic()] * len(self.daemons)
        while not self.stop_event.is_set():
            now = time.monotonic()
            for i, daemon in enumerate(self.daemons):
                try:
                    flushes = control_stats(daemon).get("flushes")
                except OSError:
                    continue
                if flushes != last[i]:
                    if last[i] is not None:
                        self.worst[i] = max(self.worst[i], now - since[i])
                    last[i], since[i] = flushes, now
            time.sleep(0.05)
        now = time.monotonic()
        for i in range(len(self.daemons)):
            self.worst[i] = max(self.worst[i], now - since[i])

    def stop(self):
        self.stop_event.set()
        self.join()


class Load:
    """Clients on every instance sending the same keys at once; counts what
    each key was sent (every answer is dunno: the quota is out of reach)."""

    def __init__(self, ports, keys, clients_per_instance=3):
        self.ports, self.keys = ports, keys
        self.sent = {key: 0 for key in keys}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(port, n), daemon=True)
                        for port in ports for n in range(clients_per_instance)]

    def run(self, port, n):
        client = PolicyClient(port=port, timeout=30)
        sent = {}
        i = n
        try:
            while not self.stop_event.is_set():
                key = self.keys[i % len(self.keys)]
                i += 1
                answer = client.ask(client_address=key)
                if answer != "dunno":
                    self.errors.append(answer)
                    break
                sent[key] = sent.get(key, 0) + 1
        except Exception as e:          # reported by stop()
            self.errors.append(repr(e))
        finally:
            client.close()
            with self.lock:
                for key, count in sent.items():
                    self.sent[key] += count

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
        assert not self.errors, self.errors[:5]
        return self.sent


BENCH = os.path.join(os.path.dirname(os.path.abspath(TALLYD)), "bench", "tallyd-bench")


class Pressure:
    """tallyd-bench on every instance, `requests` each, over the same 30
    keys (10.0.0.0 to 10.0.0.29) in random order: the load that makes the
    instances write the same rows from three nodes at once."""

    def __init__(self, ports, requests):
        self.requests = requests
        self.processes = [subprocess.Popen(
            [BENCH, "-p", str(port), "-n", str(requests), "-c", "4", "-k", "30", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for port in ports]

    def wait(self):
        for process in self.processes:
            out, _ = process.communicate(timeout=300)
            assert process.returncode == 0, out
        return self.requests * len(self.processes)


def start_relays(tallyd, cluster, database, extra=""):
    ports = [free_port() for _ in range(3)]
    daemons = [tallyd(relay_config(port, cluster.ports[node], database, "relay%d" % node,
                                   extra), name="relay%d" % node, wait_port=port)
               for node, port in zip((1, 2, 3), ports)]
    return ports, daemons


def assert_totals_on_every_node(cluster, database, sent):
    expected = {key: count for key, count in sent.items() if count}

    def node_totals(node):
        rows = cluster.execute(node, "SELECT `key`, SUM(`count`) FROM acct_client_address "
                               "GROUP BY `key`", database)
        totals = {key.decode() if isinstance(key, bytes) else key: int(total)
                  for key, total in rows}
        return {key: total for key, total in totals.items() if key in sent}

    for node in (1, 2, 3):
        wait_for(lambda: node_totals(node) == expected, 15,
                 "node %d to hold the exact totals %s (it has %s)" % (
                     node, expected, node_totals(node)))


KEYS = ["198.51.100.%d" % i for i in range(1, 31)]


def test_three_instances_on_three_nodes_flush_often_and_count_exactly(cluster, database,
                                                                         tallyd):
    if not os.access(BENCH, os.X_OK):
        pytest.skip("%s is not built" % BENCH)
    ports, daemons = start_relays(tallyd, cluster, database)
    load = Load(ports, KEYS)
    watch = FlushWatch(daemons)
    load.start()
    pressure = Pressure(ports, int(os.environ.get("TALLYD_GALERA_REQUESTS", "120000")))
    time.sleep(1)                        # every instance has something to write
    watch.start()
    answered = pressure.wait()
    watch.stop()
    sent = load.stop()
    stats = [control_stats(d) for d in daemons]
    report = ", ".join("relay%d: worst gap %.2f s, %s flushes, %s conflicts, %s failures" % (
        i + 1, watch.worst[i], s.get("flushes"), s.get("flush_conflicts"),
        s.get("flush_failures")) for i, s in enumerate(stats))
    print("\n" + report)
    for daemon in daemons:
        daemon.ctl("flush")
    bench_keys = ["10.0.0.%d" % i for i in range(30)]
    for node in (1, 2, 3):
        wait_for(lambda: cluster.execute(
            node, "SELECT SUM(`count`) FROM acct_client_address WHERE `key` LIKE '10.%%'",
            database)[0][0] == answered, 15, "node %d to hold all %d of tallyd-bench's "
            "requests" % (node, answered))
    per_key = [cluster.execute(n, "SELECT `key`, `count` FROM acct_client_address WHERE "
                                  "`key` LIKE '10.%%' ORDER BY `key`", database) for n in (1, 2, 3)]
    assert per_key[0] == per_key[1] == per_key[2] and len(per_key[0]) == len(bench_keys)
    assert_totals_on_every_node(cluster, database, sent)
    # the target: no instance goes longer than 2 × flush_interval
    # + 1 s without a successful flush
    assert max(watch.worst) <= 2 * FLUSH_INTERVAL + 1, report
    for daemon in daemons:                # conflicts are no errors
        assert "error:" not in daemon.log(), daemon.log()[-3000:]


def test_a_node_killed_under_load_and_restarted_keeps_totals_exact(cluster, database, tallyd):
    ports, daemons = start_relays(tallyd, cluster, database)
    load = Load(ports, KEYS[:10], clients_per_instance=2)
    load.start()
    time.sleep(3)
    cluster.kill(2)
    time.sleep(6)                        # past evs.suspect_timeout: node 2 is evicted
    cluster.restart(2)
    time.sleep(3)
    sent = load.stop()
    for daemon in daemons:
        wait_for(lambda: daemon.ctl("flush", check=False).returncode == 0, 30,
                 "%s to flush after node 2 came back" % daemon.name)
    assert_totals_on_every_node(cluster, database, sent)
    # the healthy nodes held their COMMITs while the cluster evicted node 2
    # (evs.suspect_timeout, 5 s): the flusher's statement_timeout (30 s)
    # waits that out, so no COMMIT of theirs was cut into an unknown outcome
    # (a loader's read may be cut after connect_timeout: it reads again)
    for daemon in (daemons[0], daemons[2]):
        cut = [line for line in daemon.log().splitlines()
               if "flusher:" in line and "connection lost" in line]
        assert not cut, cut


def test_reads_wait_for_the_cluster_on_galera(cluster, database, tallyd):
    """wsrep_sync_wait on tallyd's connections: a read on one node sees what
    another committed before it (the sequence read-back after an unknown
    COMMIT, the totals a quota loads)."""
    cluster.execute(1, "SET GLOBAL log_output = 'TABLE'")
    cluster.execute(1, "TRUNCATE mysql.general_log")
    cluster.execute(1, "SET GLOBAL general_log = 1")
    try:
        port = free_port()
        daemon = tallyd(relay_config(port, cluster.ports[1], database, "causal"), wait_port=port)
        PolicyClient(port=port).ask(client_address="192.0.2.9")
        daemon.ctl("flush")
        sets = cluster.execute(1, "SELECT argument FROM mysql.general_log WHERE argument "
                                  "LIKE 'SET SESSION wsrep_sync_wait%'")
    finally:
        cluster.execute(1, "SET GLOBAL general_log = 0")
    assert sets, "no connection of tallyd's set wsrep_sync_wait"
    assert "reads wait until it has applied" in daemon.log()


def cluster_size(cluster, node):
    return int(cluster.execute(node, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'")[0][1])


def kept_id(journal):
    with open(os.path.join(journal, "instance")) as f:
        return f.read().strip()


def add_sent(total, sent):
    for key, count in sent.items():
        total[key] = total.get(key, 0) + count
    return total


def test_persisted_ids_count_once_through_a_node_kill_and_restarts(cluster, database, tallyd,
                                                                    tmp_path):
    """Each instance keeps the id it made in its journal directory (no
    instance_id set).  Under load node 2 dies (kill -9) and the instance on
    it dies too, with increments it answered but could not write; node 2
    comes back (--wsrep-recover, IST), that instance restarts on its
    journal, and a healthy one restarts cleanly.  Every message is counted
    once on every node, and each instance kept its id."""
    nodes = (1, 2, 3)
    ports = [free_port() for _ in nodes]
    journals = [str(tmp_path / ("journal%d" % n)) for n in nodes]
    configs = [relay_config(port, cluster.ports[n], database, None, journal=journal)
               for n, port, journal in zip(nodes, ports, journals)]
    daemons = [tallyd(config, name="relay%d" % n, wait_port=port)
               for n, config, port in zip(nodes, configs, ports)]
    ids = [kept_id(journal) for journal in journals]
    assert len(set(ids)) == 3, ids
    loads = [Load([port], KEYS[:10], clients_per_instance=2) for port in ports]
    for load in loads:
        load.start()
    wait_for(lambda: all(control_stats(d).get("flushes", "0") != "0" for d in daemons), 15,
             "every instance to flush")
    cluster.kill(2)
    # relay2 answers on from memory and its journal, and cannot write them
    wait_for(lambda: control_stats(daemons[1]).get("flush_failures", "0") != "0", 30,
             "relay2 to find node 2 gone")
    sent = add_sent({}, loads[1].stop())
    daemons[1].send_signal(signal.SIGKILL)
    daemons[1].process.wait(10)
    wait_for(lambda: cluster_size(cluster, 1) == 2, 30, "the cluster to evict node 2")
    cluster.restart(2)
    tallyd(configs[1], name="relay2-again", wait_port=ports[1])
    loads[1] = Load([ports[1]], KEYS[:10], clients_per_instance=2)
    loads[1].start()
    add_sent(sent, loads[2].stop())
    assert daemons[2].stop() == 0
    daemons[2] = tallyd(configs[2], name="relay3-again", wait_port=ports[2])
    loads[2] = Load([ports[2]], KEYS[:10], clients_per_instance=2)
    loads[2].start()
    wait_for(lambda: control_stats(daemons[2]).get("flushes", "0") != "0", 15,
             "relay3 to flush after its restart")
    for load in loads:
        add_sent(sent, load.stop())
    assert [kept_id(journal) for journal in journals] == ids
    for name in ("relay2-again", "relay3-again"):
        with open(str(tmp_path / (name + ".log"))) as f:
            assert "instance id changed" not in f.read()
    rows = cluster.execute(3, "SELECT instance FROM tallyd_flushes", database)
    assert sorted(r[0].decode() for r in rows) == sorted(ids)
    assert_totals_on_every_node(cluster, database, sent)


def test_two_instances_with_one_id_on_two_nodes_are_refused(cluster, database, tallyd,
                                                             tmp_path):
    """The owner row is read on the second node after the cluster applied
    the first node's claim (wsrep_sync_wait): the second is refused, the
    first goes on."""
    ports = free_port(), free_port()
    first = tallyd(relay_config(ports[0], cluster.ports[1], database, "twin"), name="first",
                   wait_port=ports[0])
    log = refused(str(tmp_path), relay_config(ports[1], cluster.ports[3], database, "twin"),
                  "second")
    assert 'refusing to start: instance_id "twin" is in use by another tallyd' in log, log
    assert PolicyClient(port=ports[0]).ask(client_address="192.0.2.12") == "dunno"
    first.ctl("flush")
    assert cluster.execute(3, "SELECT `count` FROM acct_client_address WHERE "
                              "`key` = '192.0.2.12'", database) == ((1,),)


def test_a_read_the_node_refuses_is_run_again_not_a_lost_connection(cluster, database,
                                                                    tallyd):
    """A node that is not ready answers 1047 (here wsrep_reject_queries):
    the loader's refresh of the totals a quota uses runs again at once on
    the same connection, is counted, and is logged below error."""
    port = free_port()
    daemon = tallyd(relay_config(port, cluster.ports[2], database, "reader",
                                 extra='log_level = "debug";\n'), wait_port=port)
    client = PolicyClient(port=port)
    asked = []

    def ask_and_count_conflicts():
        # a refresh reads the keys quotas used since the last one
        assert client.ask(client_address="192.0.2.13") == "dunno"
        asked.append(1)
        return int(control_stats(daemon).get("loader_conflicts", "0")) >= 5

    ask_and_count_conflicts()
    daemon.ctl("flush")
    cluster.execute(2, "SET GLOBAL wsrep_reject_queries = ALL")
    try:
        wait_for(ask_and_count_conflicts, 15, "a refresh to meet error 1047 five times",
                 interval=0.1)
    finally:
        cluster.execute(2, "SET GLOBAL wsrep_reject_queries = NONE")
    log = daemon.log()
    assert "loader: reading totals: rolled back by a conflict with another writer" in log
    assert "attempt 2; run again" in log
    assert "loader: reading totals lost 5 conflicts in a row" in log
    assert "loader: reading totals: database connection lost" not in log
    refreshes = int(control_stats(daemon)["loader_refreshes"])
    wait_for(lambda: int(control_stats(daemon)["loader_refreshes"]) > refreshes + 1, 15,
             "refreshes to go on")
    ask_and_count_conflicts()
    wait_for(lambda: daemon.ctl("flush", check=False).returncode == 0, 15, "a flush")
    assert cluster.execute(1, "SELECT `count` FROM acct_client_address WHERE "
                              "`key` = '192.0.2.13'", database) == ((len(asked),),)
