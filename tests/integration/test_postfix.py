"""test_postfix.py: end to end with a real Postfix, as a relay admin
deploys it — the main.cf block of doc/postfix.md, pasted as the doc shows
it, pointing at tallyd on MariaDB, smtp-source (or smtplib) as the client."""
import os
import shutil
import smtplib

import pytest

from harness import free_port, wait_for
from postfix import Postfix, RecordingPolicyServer, doc_main_cf, smtp_source
from test_accounting import DEFER, howto_config, totals
from test_ratelimit import counted, deferral, rate_config

pytestmark = [
    pytest.mark.skipif(shutil.which("postfix") is None, reason="postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting Postfix needs root"),
]


@pytest.fixture
def howto_tallyd(tallyd, db):
    """tallyd on the how-to's chain and tables on MariaDB: (daemon, port)."""
    db.load_howto_tables()
    port = free_port()
    return tallyd(howto_config(port, db.config(), threshold=1000), wait_port=port), port


@pytest.fixture
def relay(howto_tallyd):
    """Postfix with doc/postfix.md's main.cf block, asking tallyd."""
    daemon, port = howto_tallyd
    postfix = Postfix(doc_main_cf(port))
    postfix.start()
    yield postfix, daemon
    postfix.stop()


@pytest.fixture
def recorded_relay(howto_tallyd):
    """The same, with a recorder between Postfix and tallyd that keeps what
    Postfix asks: the block's address is the recorder's."""
    daemon, port = howto_tallyd
    recorder = RecordingPolicyServer(port)
    postfix = Postfix(doc_main_cf(recorder.port))
    postfix.start()
    yield postfix, daemon, recorder
    postfix.stop()
    recorder.close()


def test_main_cf_block_of_doc_passes_postfix_check_and_delivers_mail(relay):
    postfix, daemon = relay
    status, output = postfix.check()
    assert status == 0, output
    assert "warning" not in output and "fatal" not in output, output
    result = smtp_source(postfix.port, messages=3)
    assert result.returncode == 0, result.stderr + postfix.log()
    # discard: is the delivery: each message leaves the queue as sent
    wait_for(lambda: postfix.log().count("status=sent") == 3, 30,
             "three deliveries (maillog: %s)" % postfix.log())
    assert "fatal:" not in postfix.log()      # e.g. smtpd's "bad numerical configuration"
    assert daemon.stats()["requests"] == "3"


def test_messages_and_recipients_are_counted_with_postfix_sizes(recorded_relay, db):
    postfix, daemon, recorder = recorded_relay
    result = smtp_source(postfix.port, messages=7, recipients=3, length=2000)
    assert result.returncode == 0, result.stderr + postfix.log()
    wait_for(lambda: len(recorder.requests) == 7, 30, "Postfix's seven requests")
    daemon.ctl("flush")
    sizes = [int(r["size"]) for r in recorder.requests]
    assert all(r["recipient_count"] == "3" for r in recorder.requests)
    assert all(size > 2000 for size in sizes)            # Postfix counts its headers too
    assert totals(db, "127.0.0.1") == (7, 21, sum(sizes), 3 * sum(sizes))


def test_quota_from_relay_policies_defers_message_q_plus_1(relay, db):
    postfix, daemon = relay
    db.execute("INSERT INTO relay_policies VALUES (1, 'small', '{\"quota_count\":\"4\"}')")
    db.execute("INSERT INTO relay_hosts (client_address, relay_policy) VALUES ('127.0.0.1', 1)")
    assert smtp_source(postfix.port, messages=4).returncode == 0
    result = smtp_source(postfix.port, messages=1)
    assert result.returncode != 0
    # Postfix turns "defer TEXT" into a 450 reply carrying TEXT
    reply = "450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: " + DEFER[len("defer "):]
    assert reply in result.stderr
    wait_for(lambda: reply in postfix.log(), 10, "Postfix's log line")
    daemon.ctl("flush")
    assert totals(db, "127.0.0.1")[0] == 4


def test_postfix_keeps_its_policy_connections(relay):
    postfix, daemon = relay
    assert smtp_source(postfix.port, messages=30).returncode == 0
    stats = daemon.stats()
    assert stats["requests"] == "30"
    # each smtpd process keeps one connection open across messages
    assert int(stats["connections_total"]) < 10


def test_with_tallyd_stopped_postfix_applies_the_docs_default_action(relay):
    postfix, daemon = relay
    assert daemon.stop() == 0
    result = smtp_source(postfix.port, messages=1)
    assert result.returncode != 0
    assert "451 4.3.5" in result.stderr       # smtpd_policy_service_default_action


def plugin_stat(daemon, plugin, name):
    """A number of `tallyctl stats`'s lines "plugin VHOST PLUGIN name N ..."
    (an unnamed virtual host is "port N", two words)."""
    for line in daemon.ctl("stats").stdout.splitlines():
        words = line.split()
        if words[:1] == ["plugin"] and plugin in words[2:4] and name in words:
            return int(words[words.index(name) + 1])
    raise AssertionError("tallyctl stats has no %s for plugin %s" % (name, plugin))


def test_rate_limit_per_minute_is_answered_450_4_7_1_by_postfix(tallyd, db):
    """RateLimit on client_address, 3 messages a minute: Postfix takes three
    from 127.0.0.1 and answers the fourth's end of data 450 4.7.1 with
    tallyd's default text; the three are delivered, the fourth counted
    nowhere but in the deferrals."""
    db.load_howto_tables()
    port = free_port()
    daemon = tallyd(rate_config(port, db.config(), "( [3, 60] )"), wait_port=port)
    postfix = Postfix(doc_main_cf(port))
    postfix.start()
    try:
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as smtp:
            for n in range(3):
                smtp.sendmail("sender@example.org", ["rcpt@example.net"],
                              "Subject: %d\r\n\r\nwithin the limit\r\n" % n)
            with pytest.raises(smtplib.SMTPDataError) as refused:
                smtp.sendmail("sender@example.org", ["rcpt@example.net"],
                              "Subject: 3\r\n\r\none too many\r\n")
        code, text = refused.value.smtp_code, refused.value.smtp_error.decode()
        # Postfix takes the text's leading 4.7.1 as the reply's status code
        assert (code, text) == (450, "4.7.1 <END-OF-MESSAGE>: End-of-data rejected: " +
                                deferral(3, 60)[len("defer 4.7.1 "):]), postfix.log()
        wait_for(lambda: postfix.log().count("status=sent") == 3, 30,
                 "three deliveries (maillog: %s)" % postfix.log())
        assert "End-of-data rejected: rate limit exceeded" in postfix.log()
    finally:
        postfix.stop()
    assert plugin_stat(daemon, "RateIP", "answers") == 1
    assert plugin_stat(daemon, "RateIP", "keys") == 1
    assert daemon.stats()["answers defer"] == "1"
    daemon.ctl("flush")
    assert counted(db, "127.0.0.1") == 3      # Accounting, after RateLimit, saw three
