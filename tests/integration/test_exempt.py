"""test_exempt.py: `exempt` on Quota, Accounting and RateLimit — a client
whose client_address is in the list passes the plugin untouched (neither
counted nor deferred by it) while every other client is counted and
deferred as before; IPv6 and IPv4-mapped addresses; what is no address is
never exempt; exempt requests are counted in stats and metrics; a reload
changes the list; a malformed entry is refused at its FILE:LINE."""
import subprocess
import urllib.request

from harness import TALLYD, PolicyClient, free_port

LIST = "127.0.0.0/8, ::1, 192.0.2.0/24"
DEFER = "defer over quota"


def config(port, database, plugins, extra=""):
    return ('listen = "127.0.0.1:%d";\n%s%s'
            'accounting = { flush_interval = 0.2; };\n'
            'virtual_hosts = ( { port = %d; name = "v"; plugins = (\n%s\n) } );\n'
            % (port, database, extra, port, ",\n".join(plugins)))


def quota(exempt=None, field="client_address"):
    return ('  { name = "QuotaIP"; module = "Quota"; field = "%s"; metric = "count";\n'
            '    threshold = 2; action = "%s"; %s}' % (field, DEFER, exempt_setting(exempt)))


def accounting(exempt=None):
    return ('  { name = "AcctIP"; module = "Accounting"; fields = "client_address, sasl_username";'
            ' %s}' % exempt_setting(exempt))


def ratelimit(exempt=None):
    return ('  { name = "RateIP"; module = "RateLimit"; field = "client_address";\n'
            '    limits = ( [2, 3600] ); %s}' % exempt_setting(exempt))


def exempt_setting(exempt):
    return 'exempt = "%s"; ' % exempt if exempt is not None else ""


def counted(db, key, table="acct_client_address"):
    """The row's count, or None when there is no row."""
    if not db.value("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                    "DATABASE() AND table_name = %s", table):
        return None
    return db.value("SELECT count FROM %s WHERE `key` = %%s" % table, key)


def shown_count(daemon, key):
    """tallyctl show's count of the key in acct_client_address."""
    for line in daemon.ctl("show", "client_address", key).stdout.splitlines():
        if line.startswith("count "):
            return int(line.split()[1])
    raise AssertionError("tallyctl show gave no count for %s" % key)


def plugin_line(daemon, plugin):
    """tallyctl stats' counters of `plugin` as a dict."""
    for line in daemon.ctl("stats").stdout.splitlines():
        words = line.split()
        if words[:1] == ["plugin"] and words[2] == plugin and words[3] == "calls":
            return {words[i]: float(words[i + 1]) for i in range(3, len(words) - 1, 2)}
    raise AssertionError("no stats line for plugin %s" % plugin)


def start(tallyd, db, plugins, extra=""):
    port = free_port()
    daemon = tallyd(config(port, db.config(), plugins, extra), wait_port=port)
    return daemon, PolicyClient(port=port)


def asks(client, address, n, **attributes):
    return [client.ask(client_address=address, **attributes) for _ in range(n)]


def test_an_exempt_client_is_never_deferred_by_a_quota_but_still_counted(tallyd, db):
    """Only the Quota is exempt: the Accounting after it counts everyone."""
    daemon, client = start(tallyd, db, [quota(LIST), accounting()])
    for address in ["192.0.2.7", "127.0.0.1", "::1", "::ffff:192.0.2.8"]:
        assert asks(client, address, 4) == ["dunno"] * 4, address
    assert asks(client, "198.51.100.1", 4) == ["dunno", "dunno", DEFER, DEFER]
    assert asks(client, "2001:db8::1", 3) == ["dunno", "dunno", DEFER]
    assert asks(client, "::ffff:198.51.100.2", 3) == ["dunno", "dunno", DEFER]
    daemon.ctl("flush")
    assert counted(db, "192.0.2.7") == 4
    assert counted(db, "::1") == 4
    assert counted(db, "198.51.100.1") == 2                 # deferred ones are not counted
    stats = plugin_line(daemon, "QuotaIP")
    assert (stats["exempt"], stats["calls"], stats["answers"]) == (16, 10, 4)


def test_an_exempt_client_is_not_counted_by_accounting(tallyd, db):
    daemon, client = start(tallyd, db, [accounting(LIST)])
    assert asks(client, "192.0.2.7", 3, sasl_username="monitor") == ["dunno"] * 3
    assert asks(client, "::1", 2) == ["dunno"] * 2
    assert asks(client, "::ffff:127.0.0.2", 2) == ["dunno"] * 2
    assert asks(client, "198.51.100.1", 3, sasl_username="alice") == ["dunno"] * 3
    daemon.ctl("flush")
    assert counted(db, "198.51.100.1") == 3
    assert counted(db, "alice", "acct_sasl_username") == 3
    for key in ["192.0.2.7", "::1", "::ffff:127.0.0.2"]:
        assert counted(db, key) is None, key
        assert shown_count(daemon, key) == 0, key
    assert counted(db, "monitor", "acct_sasl_username") is None   # no field of it is counted
    assert shown_count(daemon, "198.51.100.1") == 3
    assert plugin_line(daemon, "AcctIP")["exempt"] == 7


def test_an_exempt_client_is_neither_limited_nor_tracked_by_a_ratelimit(tallyd, db):
    daemon, client = start(tallyd, db, [ratelimit(LIST), accounting()])
    assert asks(client, "192.0.2.7", 5) == ["dunno"] * 5
    assert asks(client, "::1", 5) == ["dunno"] * 5
    limited = "defer 4.7.1 rate limit exceeded: 2 messages in 3600 seconds"
    assert asks(client, "198.51.100.1", 3) == ["dunno", "dunno", limited]
    stats = daemon.ctl("stats").stdout
    assert "plugin v RateIP keys 1 " in stats                 # only the limited client's key
    assert plugin_line(daemon, "RateIP")["exempt"] == 10
    daemon.ctl("flush")
    assert counted(db, "192.0.2.7") == 5                    # Accounting is not exempt here
    assert counted(db, "198.51.100.1") == 2


def test_all_three_exempt_the_content_filter_and_meter_it(tallyd, db):
    """The recipe of doc/operations.md: one list on every plugin that
    counts or limits; the re-injection from 127.0.0.1 passes all three."""
    metrics = free_port()
    daemon, client = start(tallyd, db, [quota(LIST), ratelimit(LIST), accounting(LIST)],
                           'metrics_listen = "127.0.0.1:%d";\n' % metrics)
    assert asks(client, "127.0.0.1", 6) == ["dunno"] * 6
    assert asks(client, "198.51.100.1", 3)[2].startswith("defer")
    daemon.ctl("flush")
    assert counted(db, "127.0.0.1") is None
    assert counted(db, "198.51.100.1") == 2
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics, timeout=5).read().decode()
    for plugin in ["QuotaIP", "RateIP", "AcctIP"]:
        assert 'tallyd_plugin_exempt_total{vhost="v",plugin="%s"} 6' % plugin in body


def test_what_is_no_address_is_never_exempt(tallyd, db):
    """Every address is in the list; a client_address that is none is not:
    empty, Postfix's "unknown", a bracketed or ipv6:-prefixed form."""
    everyone = "0.0.0.0/0, ::/0"
    daemon, client = start(tallyd, db, [quota(everyone, field="sasl_username"),
                                        accounting()])
    assert asks(client, "203.0.113.9", 3, sasl_username="a") == ["dunno"] * 3
    for i, address in enumerate(["", "unknown", "[::1]", "ipv6:::1"]):
        user = "u%d" % i
        answers = asks(client, address, 3, sasl_username=user)
        assert answers == ["dunno", "dunno", DEFER], (address, answers)
    assert plugin_line(daemon, "QuotaIP")["exempt"] == 3


def test_a_reload_changes_the_list(tallyd, db):
    port = free_port()
    daemon = tallyd(config(port, db.config(), [quota(), accounting()]), wait_port=port)
    client = PolicyClient(port=port)
    assert asks(client, "192.0.2.30", 3) == ["dunno", "dunno", DEFER]
    daemon.write_config(config(port, db.config(), [quota("192.0.2.30"), accounting()]))
    daemon.ctl("reload")
    assert asks(client, "192.0.2.30", 2) == ["dunno"] * 2
    assert asks(client, "192.0.2.31", 3) == ["dunno", "dunno", DEFER]
    # a bad list is refused; the running one stays
    daemon.write_config(config(port, db.config(), [quota("192.0.2.30/8"), accounting()]))
    refused = daemon.ctl("reload", check=False)
    assert refused.returncode != 0
    assert "exempt: '192.0.2.30/8' has bits set after its /8 prefix" in \
        refused.stdout + refused.stderr
    assert asks(client, "192.0.2.30", 1) == ["dunno"]


def check(path):
    result = subprocess.run([TALLYD, "-t", "-c", str(path)], capture_output=True, text=True,
                            timeout=60)
    return result.returncode, result.stderr


def test_a_malformed_list_is_refused_at_its_line(tmp_path):
    port = free_port()
    path = tmp_path / "t.conf"
    sqlite = 'database = { driver = "sqlite"; path = "%s/db.sqlite"; };\n' % tmp_path
    path.write_text(config(port, sqlite, [
        quota("127.0.0.0/8, 10.0.0.300"),
        ratelimit("::1, 2001:db8::/129"),
        accounting("192.0.2.1/24"),
        '  { name = "a"; module = "Action"; action = "OK";\n    exempt = "::1"; }']))
    status, err = check(path)
    assert status == 1, err
    text = path.read_text().splitlines()
    line = {name: next(n for n, l in enumerate(text, 1) if name in l)
            for name in ["10.0.0.300", "2001:db8::/129", "192.0.2.1/24", 'exempt = "::1"']}
    assert ("%s:%d: plugin 'QuotaIP': exempt: '10.0.0.300' is not an IPv4 or IPv6 address"
            % (path, line["10.0.0.300"])) in err
    assert ("%s:%d: plugin 'RateIP': exempt: '2001:db8::/129': the prefix length must be 0..128"
            % (path, line["2001:db8::/129"])) in err
    assert ("%s:%d: plugin 'AcctIP': exempt: '192.0.2.1/24' has bits set after its /24 prefix "
            "(the network is 192.0.2.0/24)" % (path, line["192.0.2.1/24"])) in err
    assert ("%s:%d: plugin 'a': unknown setting 'exempt'" % (path, line['exempt = "::1"'])) in err
    path.write_text(config(port, sqlite, ['  { name = "AcctIP"; module = "Accounting"; '
                                      'fields = "client_address"; exempt = 127; }']))
    status, err = check(path)
    assert status == 1
    assert "plugin 'AcctIP': exempt must be a string of addresses and networks" in err
    path.write_text(config(port, sqlite, [quota(LIST), ratelimit(""), accounting(LIST)]))
    status, err = check(path)
    assert status == 0, err
