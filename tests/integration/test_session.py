"""test_session.py: session_cache, one count per message — against a real
MariaDB.  Postfix asks at every RCPT of a message and repeats a request after
a policy timeout, with the same `instance` each time.  With session_cache the
first request of an instance that a plugin lets through counts for that plugin
(Accounting adds it once, RateLimit counts it once, Quota passes the message's
later requests); without it every request counts, as in mtpolicyd without a
<SessionCache>.  The last test has a real Postfix ask at RCPT."""
import os
import shutil
import signal

import pytest

from harness import PolicyClient, free_port, postfix_request, wait_for
from postfix import Postfix, RecordingPolicyServer, smtp_source

SESSION_CACHE = "session_cache = { ttl = 3600; max_entries = 1000; };\n"


def chain_config(port, database, session_cache=SESSION_CACHE):
    """Quota on client_address (2 messages), RateLimit on sasl_username
    (2 messages an hour), Accounting on both."""
    return ('listen = "127.0.0.1:%d";\n%s%s'
            'accounting = { flush_interval = 0.2; };\n'
            'virtual_hosts = ( { port = %d; plugins = (\n'
            '  { name = "QuotaIP"; module = "Quota"; field = "client_address";\n'
            '    metric = "count"; threshold = 2; action = "defer quota"; },\n'
            '  { name = "RateSASL"; module = "RateLimit"; field = "sasl_username";\n'
            '    limits = [2, 3600]; action = "defer rate"; },\n'
            '  { name = "Acct"; module = "Accounting"; fields = "client_address,sasl_username"; }\n'
            ') } );\n' % (port, database, session_cache, port))


def rcpt(instance, n, **attributes):
    """The RCPT request for the n-th recipient of message `instance`:
    recipient_count is 0 and size is unknown at that stage."""
    return postfix_request(protocol_state="RCPT", instance=instance, recipient="r%d@example.net" % n,
                           recipient_count=0, size=0, **attributes)


def send_message(client, instance, recipients=5, **attributes):
    """The answers to a message's RCPT requests."""
    return [client.ask(**rcpt(instance, n, **attributes)) for n in range(recipients)]


def totals(db, table, key):
    rows = db.execute("SELECT count, count_rcpt, size, size_rcpt FROM %s WHERE `key` = %%s" % table,
                      key)
    return tuple(int(v) for v in rows[0]) if rows else None


def start(tallyd, db, **config):
    db.load_howto_tables()
    port = free_port()
    daemon = tallyd(chain_config(port, db.config(), **config), wait_port=port)
    return daemon, PolicyClient(port=port), port


def test_five_rcpt_requests_of_one_message_count_once_for_accounting_and_quota(tallyd, db):
    daemon, client, port = start(tallyd, db)
    who = {"client_address": "192.0.2.10", "sasl_username": ""}

    assert send_message(client, "a1.b1.1", **who) == ["dunno"] * 5
    # the quota's total is 1 at the first RCPT of the second message and 2 at
    # the others: the message it passed keeps passing
    assert send_message(client, "a1.b1.2", **who) == ["dunno"] * 5
    assert send_message(client, "a1.b1.3", **who) == ["defer quota"] * 5
    daemon.ctl("flush")
    # one count per message; recipient_count is 0 at RCPT, which counts 1
    assert totals(db, "acct_client_address", "192.0.2.10") == (2, 2, 0, 0)


def test_five_rcpt_requests_of_one_message_count_once_for_ratelimit(tallyd, db):
    daemon, client, port = start(tallyd, db)
    who = {"client_address": "", "sasl_username": "ann"}   # no Quota for these

    assert send_message(client, "c1.d1.1", **who) == ["dunno"] * 5
    assert send_message(client, "c1.d1.2", **who) == ["dunno"] * 5
    assert send_message(client, "c1.d1.3", **who) == ["defer rate"] * 5
    daemon.ctl("flush")
    assert totals(db, "acct_sasl_username", "ann") == (2, 2, 0, 0)
    # RateLimit's and Accounting's marks of the two messages let through;
    # Quota skipped them (no client_address), the deferred one left none
    stats = daemon.stats()
    assert stats["session_marks"] == "4"
    assert stats["session_marks_evicted"] == "0"


def test_a_repeated_end_of_message_counts_once(tallyd, db):
    daemon, client, port = start(tallyd, db)
    request = postfix_request(instance="e1.f1.1", client_address="192.0.2.20", sasl_username="bea",
                              recipient_count=3, size=1234)

    assert client.ask(**request) == "dunno"
    # Postfix repeats the request on a new connection when the answer is late
    assert PolicyClient(port=port).ask(**request) == "dunno"
    assert client.ask(**request) == "dunno"
    daemon.ctl("flush")
    assert totals(db, "acct_client_address", "192.0.2.20") == (1, 3, 1234, 3702)
    assert totals(db, "acct_sasl_username", "bea") == (1, 3, 1234, 3702)
    # another message of the same client counts
    assert client.ask(**postfix_request(instance="e1.f1.2", client_address="192.0.2.20",
                                        sasl_username="bea", recipient_count=1,
                                        size=10)) == "dunno"
    daemon.ctl("flush")
    assert totals(db, "acct_client_address", "192.0.2.20") == (2, 4, 1244, 3712)


def test_without_session_cache_every_request_counts(tallyd, db):
    daemon, client, port = start(tallyd, db, session_cache="")
    assert daemon.stats()["session_marks"] == "0"

    # Quota: the total is 2 at the third RCPT
    assert send_message(client, "g1.h1.1", client_address="192.0.2.30", sasl_username="") == \
        ["dunno", "dunno", "defer quota", "defer quota", "defer quota"]
    # RateLimit: two RCPTs fill [2, 3600]
    assert send_message(client, "g1.h1.2", client_address="", sasl_username="cy") == \
        ["dunno", "dunno", "defer rate", "defer rate", "defer rate"]
    request = postfix_request(instance="g1.h1.3", client_address="192.0.2.31", sasl_username="",
                              recipient_count=3, size=1234)
    assert client.ask(**request) == "dunno"
    assert client.ask(**request) == "dunno"
    daemon.ctl("flush")
    assert totals(db, "acct_client_address", "192.0.2.30") == (2, 2, 0, 0)
    assert totals(db, "acct_sasl_username", "cy") == (2, 2, 0, 0)
    assert totals(db, "acct_client_address", "192.0.2.31") == (2, 6, 2468, 7404)


def test_a_reload_keeps_the_messages_in_progress_and_can_turn_the_cache_off(tallyd, db):
    daemon, client, port = start(tallyd, db)
    who = {"client_address": "192.0.2.40", "sasl_username": ""}

    assert send_message(client, "k1.l1.1", recipients=2, **who) == ["dunno"] * 2
    reloads = daemon.log().count("reloaded")
    daemon.write_config(chain_config(port, db.config(),
                                     "session_cache = { ttl = 600; max_entries = 5000; };\n"))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.log().count("reloaded") > reloads, 15, "the reload")
    # the rest of the message, after the reload: not counted again
    assert [client.ask(**rcpt("k1.l1.1", n, **who)) for n in range(2, 5)] == ["dunno"] * 3
    daemon.ctl("flush")
    assert totals(db, "acct_client_address", "192.0.2.40") == (1, 1, 0, 0)

    daemon.write_config(chain_config(port, db.config(), ""))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.log().count("reloaded") > reloads + 1, 15, "the second reload")
    assert send_message(client, "k1.l1.2", recipients=1, **who) == ["dunno"]
    assert send_message(client, "k1.l1.2", recipients=1, **who) == ["defer quota"]
    daemon.ctl("flush")
    assert totals(db, "acct_client_address", "192.0.2.40") == (2, 2, 0, 0)


@pytest.mark.skipif(shutil.which("postfix") is None, reason="postfix is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="starting Postfix needs root")
def test_postfix_asking_at_every_rcpt_counts_each_message_once(tallyd, db):
    daemon, client, port = start(tallyd, db)
    recorder = RecordingPolicyServer(port)
    postfix = Postfix("smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:%d, "
                      "permit_mynetworks, reject\n" % recorder.port)
    postfix.start()
    try:
        result = smtp_source(postfix.port, messages=2, recipients=5)
        assert result.returncode == 0, result.stderr + postfix.log()
        # Postfix asked at each of the ten RCPTs, with one instance per message
        wait_for(lambda: len(recorder.requests) >= 10, 30, "Postfix's ten requests")
        asked = recorder.requests[:10]
        assert {r["protocol_state"] for r in asked} == {"RCPT"}
        assert len({r["instance"] for r in asked}) == 2
        # two messages are the quota (threshold 2): the third is deferred at RCPT
        smtp_source(postfix.port, messages=1, recipients=5)
        wait_for(lambda: "Recipient address rejected: quota" in postfix.log(), 30,
                 "the deferral in the maillog (maillog: %s)" % postfix.log())
    finally:
        postfix.stop()
        recorder.close()
    daemon.ctl("flush")
    assert totals(db, "acct_client_address", "127.0.0.1") == (2, 2, 0, 0)
