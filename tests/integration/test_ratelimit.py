"""test_ratelimit.py: RateLimit in a running tallyd — windows that slide,
several windows per key, per-user limits from SqlUserConfig JSON on
MariaDB, deferrals that name their window and are not counted."""
import time

from harness import PolicyClient, free_port

HOWTO_QUERY = ("SELECT p.config FROM relay_policies p JOIN relay_hosts h "
               "ON (h.relay_policy = p.id) WHERE h.client_address=?")


def rate_config(port, database, limits):
    """SqlUserConfig, RateLimit on client_address, then Accounting."""
    return ('listen = "127.0.0.1:%d";\n%s'
            'accounting = { flush_interval = 0.2; };\n'
            'virtual_hosts = ( { port = %d; plugins = (\n'
            '  { name = "PolicyConfig"; module = "SqlUserConfig"; field = "client_address";\n'
            '    sql_query = "%s"; },\n'
            '  { name = "RateIP"; module = "RateLimit"; field = "client_address";\n'
            '    limits = %s; uc_limits = "rate_limits"; },\n'
            '  { name = "AcctIP"; module = "Accounting"; fields = "client_address"; }\n'
            ') } );\n' % (port, database, port, HOWTO_QUERY, limits))


def deferral(count, seconds, unit="messages"):
    return "defer 4.7.1 rate limit exceeded: %d %s in %d seconds" % (count, unit, seconds)


def counted(db, key):
    return db.value("SELECT count FROM acct_client_address WHERE `key` = %s", key)


def start(tallyd, db, limits):
    db.load_howto_tables()
    port = free_port()
    daemon = tallyd(rate_config(port, db.config(), limits), wait_port=port)
    return daemon, PolicyClient(port=port)


def test_a_full_window_lets_one_through_as_each_old_message_leaves(tallyd, db):
    daemon, client = start(tallyd, db, "( [3, 6] )")
    answered = []                         # when each accepted message had its answer

    def send():
        answer = client.ask(client_address="192.0.2.1")
        if answer == "dunno":
            answered.append(time.monotonic())
        return answer

    def after(offset):
        time.sleep(max(0, offset - time.monotonic()))

    for n in range(3):                    # three messages, two seconds apart
        if answered:
            after(answered[-1] + 2)
        assert send() == "dunno"
    assert send() == deferral(3, 6)
    after(answered[0] + 6.3)              # the first left; the second has not
    assert send() == "dunno"
    assert send() == deferral(3, 6)
    after(answered[1] + 6.3)              # the second left
    assert send() == "dunno"
    assert send() == deferral(3, 6)
    daemon.ctl("flush")
    assert counted(db, "192.0.2.1") == 5  # the three deferrals are not counted


def test_several_windows_defer_by_the_first_they_overflow_and_count_in_none(tallyd, db):
    daemon, client = start(tallyd, db, "( [2, 2], [3, 60] )")

    assert client.ask(client_address="192.0.2.2") == "dunno"
    assert client.ask(client_address="192.0.2.2") == "dunno"
    assert client.ask(client_address="192.0.2.2") == deferral(2, 2)
    time.sleep(2.3)                       # the two-second window is empty again
    assert client.ask(client_address="192.0.2.2") == "dunno"
    assert client.ask(client_address="192.0.2.2") == deferral(3, 60)
    time.sleep(1.2)
    assert client.ask(client_address="192.0.2.2") == deferral(3, 60)
    daemon.ctl("flush")
    assert counted(db, "192.0.2.2") == 3
    lines = daemon.ctl("stats").stdout
    assert "RateIP keys 1 evicted_idle 0 evicted_active 0" in lines
    assert "RateIP calls 6 answers 3 " in lines


def test_per_user_limits_come_from_sql_json(tallyd, db):
    db.load_howto_tables()
    policies = [(1, '{"rate_limits": [[2, 60]]}'),             # a JSON array
                (2, '{"rate_limits": "[[4, 60], [10, 3600]]"}'),  # a string holding one
                (3, '{"rate_limits": [[0, 60]]}'),              # unusable: configured
                (4, '{"rate_limits": [[5, 60], [1, 60]]}')]     # the second is the tighter
    for number, config in policies:
        db.execute("INSERT INTO relay_policies VALUES (%s, %s, %s)", number, "p%d" % number,
                   config)
        db.execute("INSERT INTO relay_hosts (client_address, relay_policy) VALUES (%s, %s)",
                   "198.51.100.%d" % number, number)
    port = free_port()
    daemon = tallyd(rate_config(port, db.config(), "( [3, 60] )"), wait_port=port)
    client = PolicyClient(port=port)

    def accepted(address):
        for n in range(20):
            answer = client.ask(client_address=address)
            if answer != "dunno":
                return n, answer
        return 20, None

    assert accepted("198.51.100.1") == (2, deferral(2, 60))
    assert accepted("198.51.100.2") == (4, deferral(4, 60))
    assert accepted("198.51.100.3") == (3, deferral(3, 60))
    assert accepted("198.51.100.4") == (1, deferral(1, 60))
    assert accepted("203.0.113.9") == (3, deferral(3, 60))     # no policy: configured
    daemon.ctl("flush")
    assert [counted(db, "198.51.100.%d" % n) for n in (1, 2, 3, 4)] == [2, 4, 3, 1]
    assert "not usable limits" in daemon.log()
