"""test_identity.py: one writer per instance id (doc/reliability.md,
"One writer per instance id"): the id is kept in the journal directory,
the sequence row moves only by compare-and-set, and a second live tallyd
with the same id is refused."""
import os
import shutil
import signal
import subprocess

import pytest

from harness import PolicyClient, Tallyd, free_port, wait_for
from dbproxy import Proxy
from test_accounting import howto_config, store, totals  # noqa: F401 (store: a fixture)


def journal_config(port, database, journal, extra="", listen=None):
    """The how-to's config with a journal; `listen`: ports, in order."""
    config = howto_config(port, database, threshold=10 ** 9, extra=extra).replace(
        "accounting = { flush_interval = 0.2; };\n",
        'accounting = { flush_interval = 0.2; journal = "%s"; };\n' % journal)
    if listen:
        config = config.replace('listen = "127.0.0.1:%d";' % port, 'listen = ( %s );' %
                                ", ".join('"127.0.0.1:%d"' % p for p in listen))
    return config


def refused(directory, config, name):
    """Starts tallyd expecting it to stop by itself; returns its log."""
    daemon = Tallyd(directory, config, name).start()
    try:
        status = daemon.process.wait(30)
    except subprocess.TimeoutExpired:
        daemon.process.kill()             # no fixture stops it
        daemon.process.wait(10)
        raise AssertionError("tallyd did not refuse to start:\n" + daemon.log())
    assert status != 0, daemon.log()
    return daemon.log()


def rows(store):
    return store.execute("SELECT instance, owner FROM tallyd_flushes")


def test_a_reordered_listen_after_a_cut_commit_counts_once(tallyd, db, tmp_path):
    """A COMMIT whose reply never came, a kill -9, a restart whose first
    `listen` entry is another: the id kept in the journal resolves the
    flush, which is counted once."""
    db.load_howto_tables()
    proxy = Proxy(db.server.port)
    port, other = free_port(), free_port()
    journal = str(tmp_path / "journal")
    daemon = tallyd(journal_config(port, db.config(port=str(proxy.port)), journal,
                                   listen=[port, other]), name="first", wait_port=port)
    daemon.ctl("flush")                   # claimed: the next COMMIT is a flush's
    proxy.then, proxy.mode = "hang", "commit-reply"
    client = PolicyClient(port=port)
    for _ in range(30):
        assert client.ask(client_address="192.0.2.201", size=10) == "dunno"
    wait_for(lambda: proxy.cuts >= 1, 15, "a COMMIT cut after the server took it")
    daemon.send_signal(9)
    daemon.process.wait(10)
    proxy.close()
    assert db.value("SELECT count FROM acct_client_address WHERE `key`='192.0.2.201'") == 30
    with open(os.path.join(journal, "instance")) as f:
        kept = f.read().strip()
    second = tallyd(journal_config(port, db.config(), journal, listen=[other, port]),
                    name="second", wait_port=port)
    second.ctl("flush")
    assert "was committed before the connection broke" in second.log()
    # a flush resolved as committed is a flush (tallyctl stats)
    assert second.stats()["flushes"] == "1"
    assert second.stats()["last_flush_error"] == "-"
    assert totals(db, "192.0.2.201")[0] == 30
    assert [r[0].decode() for r in rows(db)] == [kept]


def test_a_second_live_tallyd_with_the_same_id_is_refused(tallyd, store, tmp_path):
    store.load_howto_tables()
    ports = free_port(), free_port()
    same = 'instance_id = "relay";\n'
    first = tallyd(howto_config(ports[0], store.config(), extra=same), name="first",
                   wait_port=ports[0])
    wait_for(lambda: len(rows(store)) == 1 and rows(store)[0][1], 15, "the first to claim")
    log = refused(str(tmp_path), howto_config(ports[1], store.config(), extra=same), "second")
    assert 'refusing to start: instance_id "relay" is in use by another tallyd' in log
    # the first goes on flushing under its id
    assert PolicyClient(port=ports[0]).ask(client_address="192.0.2.202") == "dunno"
    first.ctl("flush")
    assert totals(store, "192.0.2.202")[0] == 1


def test_a_cloned_journal_directory_is_refused_while_its_twin_runs(tallyd, db, tmp_path):
    """A cloned host brings the `instance` file along: the clone finds the
    id held by a live tallyd and stops."""
    db.load_howto_tables()
    ports = free_port(), free_port()
    original = str(tmp_path / "journal")
    tallyd(journal_config(ports[0], db.config(), original), name="original", wait_port=ports[0])
    clone = str(tmp_path / "clone")
    os.mkdir(clone, 0o700)
    shutil.copy(os.path.join(original, "instance"), clone)
    log = refused(str(tmp_path), journal_config(ports[1], db.config(), clone), "clone")
    assert "is in use by another tallyd" in log


def test_two_tallyds_on_one_journal_directory_are_refused(tallyd, db, tmp_path):
    db.load_howto_tables()
    ports = free_port(), free_port()
    journal = str(tmp_path / "journal")
    tallyd(journal_config(ports[0], db.config(), journal), name="first", wait_port=ports[0])
    log = refused(str(tmp_path), journal_config(ports[1], db.config(), journal), "second")
    assert "another tallyd uses the journal directory" in log


def test_a_restart_after_kill_9_takes_its_row_back_at_once(tallyd, store, tmp_path):
    store.load_howto_tables()
    port = free_port()
    config = howto_config(port, store.config(), extra='instance_id = "relay";\n')
    daemon = tallyd(config, name="first", wait_port=port)
    assert PolicyClient(port=port).ask(client_address="192.0.2.203") == "dunno"
    daemon.ctl("flush")
    daemon.send_signal(9)
    daemon.process.wait(10)
    again = tallyd(config, name="second", wait_port=port)
    assert PolicyClient(port=port).ask(client_address="192.0.2.203") == "dunno"
    again.ctl("flush")
    assert totals(store, "192.0.2.203")[0] == 2
    assert again.stop() == 0
    assert list(rows(store)) == [(b"relay" if store.driver == "mysql" else "relay",
                            b"" if store.driver == "mysql" else "")]


def test_a_row_taken_over_stops_flushes_until_it_is_free(tallyd, store, tmp_path):
    """Compare-and-set: when another owner holds the row, no flush writes
    (its increments are kept); once the row is free they are written."""
    store.load_howto_tables()
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), extra='instance_id = "relay";\n'),
                    wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.204") == "dunno"
    daemon.ctl("flush")
    store.execute("UPDATE tallyd_flushes SET owner = 'elsewhere pid 1 boot x' "
                  "WHERE instance = 'relay'")
    for _ in range(5):
        assert client.ask(client_address="192.0.2.204") == "dunno"
    assert daemon.ctl("flush", check=False).returncode != 0
    assert totals(store, "192.0.2.204")[0] == 1
    assert 'the row of instance "relay" in tallyd_flushes has another owner' in daemon.log()
    store.execute("UPDATE tallyd_flushes SET owner = '' WHERE instance = 'relay'")
    wait_for(lambda: daemon.ctl("flush", check=False).returncode == 0, 15, "a flush")
    assert totals(store, "192.0.2.204")[0] == 6


def test_an_old_tallyd_flushes_table_gets_its_owner_columns(tallyd, store, tmp_path):
    store.load_howto_tables()
    store.execute("DROP TABLE tallyd_flushes")
    store.execute("CREATE TABLE tallyd_flushes (instance VARCHAR(255) NOT NULL PRIMARY KEY, "
                  "seq BIGINT NOT NULL, flushed_at TIMESTAMP NULL)")
    store.execute("INSERT INTO tallyd_flushes (instance, seq) VALUES ('relay', 7)")
    port = free_port()
    daemon = tallyd(howto_config(port, store.config(), extra='instance_id = "relay";\n'),
                    wait_port=port)
    assert PolicyClient(port=port).ask(client_address="192.0.2.205") == "dunno"
    daemon.ctl("flush")
    assert store.value("SELECT seq FROM tallyd_flushes WHERE instance = 'relay'") == 8


@pytest.mark.parametrize("cut, in_database, resolved", [
    ("commit-reply", 30, "flush 1 was committed before the connection broke"),
    ("commit-hang", 0, "flush 1 was not committed; writing it again")],
    ids=["committed", "not-committed"])
def test_an_id_change_waits_until_the_flush_of_unknown_outcome_is_resolved(
        tallyd, db, tmp_path, cut, in_database, resolved):
    """A COMMIT whose answer never came (the server took it, or never got
    it), a kill -9, a restart under another explicit `instance_id`: the new
    id's sequence number cannot say whether that batch is in, so tallyd
    refuses, naming the old id, and changes nothing; a start under the old
    id resolves the flush, after which the change is taken. Every message
    is counted once."""
    db.load_howto_tables()
    proxy = Proxy(db.server.port)
    port = free_port()
    journal = str(tmp_path / "journal")
    old, new = 'instance_id = "relay-old";\n', 'instance_id = "relay-new";\n'
    daemon = tallyd(journal_config(port, db.config(port=str(proxy.port)), journal, extra=old),
                    name="first", wait_port=port)
    daemon.ctl("flush")                   # claimed: the next COMMIT is a flush's
    proxy.then, proxy.mode = "hang", cut
    client = PolicyClient(port=port)
    for _ in range(30):
        assert client.ask(client_address="192.0.2.206", size=10) == "dunno"
    wait_for(lambda: proxy.cuts >= 1, 15, "a COMMIT whose answer is lost")
    daemon.send_signal(9)
    daemon.process.wait(10)
    proxy.close()
    wait_for(lambda: (totals(db, "192.0.2.206") or (0,))[0] == in_database, 15,
             "the server to settle the cut transaction")

    log = refused(str(tmp_path), journal_config(port, db.config(), journal, extra=new), "new")
    assert ('holds flush 1 of unknown outcome, written as instance "relay-old"; '
            'start once with instance_id = "relay-old"') in log, log
    with open(os.path.join(journal, "instance")) as f:
        assert f.read().strip() == "relay-old"
    assert [r[0] for r in rows(db)] == [b"relay-old"]

    again = tallyd(journal_config(port, db.config(), journal, extra=old), name="again",
                   wait_port=port)
    again.ctl("flush")
    assert resolved in again.log()
    assert totals(db, "192.0.2.206") == (30, 30, 300, 300)
    assert again.stop() == 0

    changed = tallyd(journal_config(port, db.config(), journal, extra=new), name="changed",
                     wait_port=port)
    assert 'instance id changed from "relay-old" to "relay-new"' in changed.log()
    client = PolicyClient(port=port)
    for _ in range(5):
        assert client.ask(client_address="192.0.2.206", size=10) == "dunno"
    assert changed.stop() == 0
    assert totals(db, "192.0.2.206") == (35, 35, 350, 350)
    assert sorted(r[0] for r in rows(db)) == [b"relay-new", b"relay-old"]
    with open(os.path.join(journal, "instance")) as f:
        assert f.read().strip() == "relay-new"


def test_a_start_without_the_database_keeps_the_flush_of_unknown_outcome(tallyd, db, tmp_path):
    """A COMMIT that never reached the server, kill -9, a start while the
    database is away (which rewrites the journal), kill -9 again: the next
    start still holds the batch as of unknown outcome and writes it once."""
    db.load_howto_tables()
    proxy = Proxy(db.server.port)
    port = free_port()
    journal = str(tmp_path / "journal")
    first = tallyd(journal_config(port, db.config(port=str(proxy.port)), journal), name="first",
                   wait_port=port)
    first.ctl("flush")
    proxy.then, proxy.mode = "hang", "commit-hang"
    client = PolicyClient(port=port)
    for _ in range(30):
        assert client.ask(client_address="192.0.2.77", size=10) == "dunno"
    wait_for(lambda: proxy.cuts >= 1, 15, "the COMMIT held back")
    first.send_signal(signal.SIGKILL)
    first.process.wait(10)
    proxy.close()
    away = tallyd(journal_config(port, db.config(port=str(free_port())), journal), name="away",
                  wait_port=port)
    assert "30 increments read back, 30 not yet known" in away.log()
    away.send_signal(signal.SIGKILL)
    away.process.wait(10)
    back = tallyd(journal_config(port, db.config(), journal), name="back", wait_port=port)
    wait_for(lambda: back.ctl("flush", check=False).returncode == 0, 15, "a flush")
    assert totals(db, "192.0.2.77") == (30, 30, 300, 300)
    assert back.stop() == 0
