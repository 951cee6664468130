"""test_decisions.py: decisions people can see — the notice when a key
reaches its quota, a Quota in monitor mode, tallyctl top, and the
allow-list recipe of doc/operations.md, on MariaDB and on SQLite."""
import re

from harness import PolicyClient, free_port, wait_for
from test_accounting import (DEFER, HOWTO_QUERY, add_policy, howto_config, store,  # noqa: F401
                             totals)


def quota_config(port, database, threshold, extra_quota=""):
    """A Quota on client_address, then Accounting, logging notices."""
    return ('listen = "127.0.0.1:%d";\nlog_level = "notice";\n%s'
            'accounting = { flush_interval = 0.2; };\n'
            'virtual_hosts = ( { port = %d; name = "accounting"; plugins = (\n'
            '  { name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";\n'
            '    threshold = %d; action = "%s"; %s },\n'
            '  { name = "AcctIP"; module = "Accounting"; fields = "client_address"; }\n'
            ') } );\n' % (port, database, port, threshold, DEFER, extra_quota))


def plugin_stats(daemon, plugin):
    """tallyctl stats' line for `plugin`, as a dict of its numbers."""
    for line in daemon.ctl("stats").stdout.splitlines():
        words = line.split()
        if words[:1] == ["plugin"] and words[2] == plugin:
            return {words[i]: float(words[i + 1]) for i in range(3, len(words) - 1, 2)}
    raise AssertionError("no stats line for plugin %s" % plugin)


def notices(daemon, key):
    return re.findall(r"plugin QuotaIP: client_address %s reached its quota for \S+: "
                      r"count (\d+) of (\d+); (.*)" % re.escape(key), daemon.log())


def test_the_first_deferral_of_a_key_is_logged_once(tallyd, store):
    port = free_port()
    daemon = tallyd(quota_config(port, store.config(), threshold=2), wait_port=port)
    client = PolicyClient(port=port)
    answers = [client.ask(client_address=key) for key in ["192.0.2.1"] * 5 + ["192.0.2.2"] * 4]
    assert answers == ["dunno", "dunno", DEFER, DEFER, DEFER, "dunno", "dunno", DEFER, DEFER]
    wait_for(lambda: notices(daemon, "192.0.2.2"), what="the second key's notice")
    assert notices(daemon, "192.0.2.1") == [("2", "2", 'answering "%s"' % DEFER)]
    assert len(notices(daemon, "192.0.2.2")) == 1
    assert plugin_stats(daemon, "QuotaIP")["answers"] == 5
    assert plugin_stats(daemon, "QuotaIP")["monitored"] == 0


def test_a_quota_in_monitor_mode_answers_nothing_and_counts_what_it_would(tallyd, store):
    port = free_port()
    daemon = tallyd(quota_config(port, store.config(), threshold=2, extra_quota="monitor = true;"),
                    wait_port=port)
    client = PolicyClient(port=port)
    assert [client.ask(client_address="192.0.2.3") for _ in range(5)] == ["dunno"] * 5
    wait_for(lambda: notices(daemon, "192.0.2.3"), what="the notice")
    assert notices(daemon, "192.0.2.3") == [
        ("2", "2", 'monitor = true: would answer "%s"' % DEFER)]
    stats = plugin_stats(daemon, "QuotaIP")
    assert (stats["answers"], stats["monitored"]) == (0, 3)
    daemon.ctl("flush")
    assert totals(store, "192.0.2.3")[0] == 5          # every message counted
    # switched to enforcing by a reload, the counts go on
    daemon.write_config(quota_config(port, store.config(), threshold=2))
    daemon.ctl("reload")
    assert client.ask(client_address="192.0.2.3") == DEFER


def test_tallyctl_top_lists_the_biggest_keys_of_the_period(tallyd, store):
    port = free_port()
    daemon = tallyd(quota_config(port, store.config(), threshold=1000), wait_port=port)
    client = PolicyClient(port=port)
    sent = {"192.0.2.10": 3, "192.0.2.11": 1, "192.0.2.12": 5, "192.0.2.13": 2}
    for key, count in sent.items():
        for _ in range(count):
            client.ask(client_address=key, size=1000 * (14 - int(key.rsplit(".", 1)[1])))
    lines = daemon.ctl("top", "client_address", "3").stdout.splitlines()
    assert lines[:3] == ["table acct_client_address", "time " + lines[1].split()[1], "metric count"]
    assert lines[3] == "keys 4"
    assert lines[4:] == ["1 5 192.0.2.12", "2 3 192.0.2.10", "3 2 192.0.2.13"]
    by_size = daemon.ctl("top", "acct_client_address", "1", "size").stdout.splitlines()
    assert by_size[-1] == "1 12000 192.0.2.10"        # 3 messages of 4000 bytes
    daemon.ctl("flush")                                 # flushed counts are still counted
    assert daemon.ctl("top", "client_address").stdout.splitlines()[4] == "1 5 192.0.2.12"
    for args in (("top",), ("top", "client_address", "0"), ("top", "client_address", "x"),
                 ("top", "client_address", "3", "bytes")):
        wrong = daemon.ctl(*args, check=False)
        assert wrong.returncode == 2 and "usage: top FIELD [N] [METRIC]" in wrong.stderr, args


def test_an_sql_user_config_switches_a_quota_off_for_one_client(tallyd, store):
    """doc/operations.md's allow-list recipe: a relay policy with
    "quota_enabled":"off" exempts its clients from the Quota."""
    store.execute("INSERT INTO relay_policies VALUES (10, 'exempt', '{\"quota_enabled\":\"off\"}')")
    store.execute("INSERT INTO relay_hosts (client_address, relay_policy) "
                  "VALUES ('192.0.2.25', 10)")
    add_policy(store, "192.0.2.26", '{"quota_enabled":"OFF"}', 11)    # only "off" switches off
    port = free_port()
    config = howto_config(port, store.config(), threshold=2).replace(
        'uc_threshold = "quota_count";', 'uc_threshold = "quota_count"; uc_enabled = "quota_enabled";')
    assert 'uc_enabled = "quota_enabled"' in config
    daemon = tallyd(config, wait_port=port)
    client = PolicyClient(port=port)
    assert [client.ask(client_address="192.0.2.25") for _ in range(5)] == ["dunno"] * 5
    assert [client.ask(client_address="192.0.2.26") for _ in range(3)] == ["dunno", "dunno", DEFER]
    assert [client.ask(client_address="192.0.2.27") for _ in range(3)] == ["dunno", "dunno", DEFER]
    daemon.ctl("flush")
    assert totals(store, "192.0.2.25")[0] == 5          # exempt, still counted
