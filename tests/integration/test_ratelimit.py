"""test_ratelimit.py: RateLimit in a running tallyd — windows that slide,
several windows per key, per-user limits from SqlUserConfig JSON on
MariaDB, deferrals that name their window and are not counted; windows that
survive a restart (ratelimit_state), tallyctl show/reset rate:..., and the
recipes of doc/ratelimit.md as written."""
import os
import re
import signal
import subprocess
import time

from harness import TALLYD, PolicyClient, build_preload, free_port, preloaded, wait_for

HOWTO_QUERY = ("SELECT p.config FROM relay_policies p JOIN relay_hosts h "
               "ON (h.relay_policy = p.id) WHERE h.client_address=?")


def rate_config(port, database, limits, extra=""):
    """SqlUserConfig, RateLimit on client_address, then Accounting."""
    return ('listen = "127.0.0.1:%d";\n%s%s'
            'accounting = { flush_interval = 0.2; };\n'
            'virtual_hosts = ( { port = %d; plugins = (\n'
            '  { name = "PolicyConfig"; module = "SqlUserConfig"; field = "client_address";\n'
            '    sql_query = "%s"; },\n'
            '  { name = "RateIP"; module = "RateLimit"; field = "client_address";\n'
            '    limits = %s; uc_limits = "rate_limits"; },\n'
            '  { name = "AcctIP"; module = "Accounting"; fields = "client_address"; }\n'
            ') } );\n' % (port, database, extra, port, HOWTO_QUERY, limits))


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


def state_config(port, directory, short, long):
    """Two RateLimits and no database: RateShort on client_address,
    RateLong on sasl_username, their windows kept in directory/rl.state."""
    return ('listen = "127.0.0.1:%d";\nratelimit_state = "%s/rl.state";\n'
            'virtual_hosts = ( { port = %d; plugins = (\n'
            '  { name = "RateShort"; module = "RateLimit"; field = "client_address";\n'
            '    limits = %s; },\n'
            '  { name = "RateLong"; module = "RateLimit"; field = "sasl_username";\n'
            '    limits = %s; }\n'
            ') } );\n' % (port, directory, port, short, long))


def restart(daemon, port, config=None, pause_until=None):
    """Stops and starts the daemon, and waits for this start's "started"."""
    assert daemon.stop() == 0
    if config:
        daemon.write_config(config)
    if pause_until:
        time.sleep(max(0, pause_until - time.monotonic()))
    starts = daemon.log().count(" started: ")
    daemon.start(wait_port=port)
    wait_for(lambda: daemon.log().count(" started: ") > starts, 15, "tallyd to start again")
    return PolicyClient(port=port)


def key_stats(daemon, plugin):
    """The 'plugin VHOST NAME keys ...' line of tallyctl stats, from 'keys'."""
    for line in daemon.ctl("stats").stdout.splitlines():
        words = line.split()
        if words[:1] == ["plugin"] and plugin in words and "keys" in words:
            return " ".join(words[words.index("keys"):])
    return None


def test_a_client_at_its_limit_is_still_deferred_after_a_restart(tallyd, tmp_path):
    port = free_port()
    config = state_config(port, tmp_path, "( [100, 60] )", "( [2, 3600] )")
    daemon = tallyd(config, wait_port=port)
    client = PolicyClient(port=port)
    for n in range(2):
        assert client.ask(sasl_username="alice", client_address="192.0.2.%d" % n) == "dunno"
    assert client.ask(sasl_username="alice", client_address="192.0.2.9") == deferral(2, 3600)

    client = restart(daemon, port)
    assert "rate limit state %s/rl.state: 4 keys saved" % tmp_path in daemon.log()
    assert client.ask(sasl_username="alice", client_address="192.0.2.8") == deferral(2, 3600)
    assert client.ask(sasl_username="bob", client_address="192.0.2.8") == "dunno"
    assert key_stats(daemon, "RateLong") == "keys 2 evicted_idle 0 evicted_active 0 restored 1"
    assert key_stats(daemon, "RateShort") == "keys 4 evicted_idle 0 evicted_active 0 restored 3"

    # other limits for RateLong: its keys start afresh, said in the log;
    # RateShort's are still restored
    client = restart(daemon, port, state_config(port, tmp_path, "( [100, 60] )", "( [3, 3600] )"))
    assert ("the limits or the metric of RateLimit RateLong changed since the state was "
            "saved; its 2 keys start afresh") in daemon.log()
    assert client.ask(sasl_username="alice", client_address="192.0.2.7") == "dunno"
    assert key_stats(daemon, "RateShort") == "keys 5 evicted_idle 0 evicted_active 0 restored 4"


def test_a_crash_keeps_the_windows_of_the_last_periodic_save(tallyd, tmp_path):
    port = free_port()
    path = os.path.join(str(tmp_path), "rl.state")
    config = ("accounting = { snapshot_interval = 1; };\n" +
              state_config(port, tmp_path, "( [100, 60] )", "( [2, 3600] )"))
    daemon = tallyd(config, wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(sasl_username="carol", client_address="192.0.2.1") == "dunno"
    assert client.ask(sasl_username="carol", client_address="192.0.2.2") == "dunno"
    answered = time.time_ns()
    wait_for(lambda: os.path.exists(path) and os.stat(path).st_mtime_ns > answered, 15,
             "a periodic save of the state file")
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL

    starts = daemon.log().count(" started: ")
    daemon.start(wait_port=port)
    wait_for(lambda: daemon.log().count(" started: ") > starts, 15, "tallyd to start again")
    client = PolicyClient(port=port)
    assert client.ask(sasl_username="carol", client_address="192.0.2.3") == deferral(2, 3600)


def test_a_window_that_emptied_while_tallyd_was_stopped_is_not_restored(tallyd, tmp_path):
    port = free_port()
    daemon = tallyd(state_config(port, tmp_path, "( [2, 3] )", "( [2, 3600] )"), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.1") == "dunno"
    assert client.ask(client_address="192.0.2.1") == "dunno"
    last = time.monotonic()
    assert client.ask(client_address="192.0.2.1") == deferral(2, 3)
    client = restart(daemon, port, pause_until=last + 3.5)   # the 3-second window is empty
    assert "0 keys restored" in daemon.log()
    assert "1 whose windows emptied since" in daemon.log()
    assert key_stats(daemon, "RateShort") == "keys 0 evicted_idle 0 evicted_active 0 restored 0"
    assert client.ask(client_address="192.0.2.1") == "dunno"
    assert client.ask(client_address="192.0.2.1") == "dunno"
    assert client.ask(client_address="192.0.2.1") == deferral(2, 3)


def test_a_damaged_or_cut_state_file_is_set_aside_and_logged(tallyd, tmp_path):
    port = free_port()
    path = os.path.join(str(tmp_path), "rl.state")
    with open(path, "wb") as f:
        f.write(b"this is no state file\n")
    daemon = tallyd(state_config(port, tmp_path, "( [2, 3600] )", "( [2, 3600] )"),
                    wait_port=port)
    client = PolicyClient(port=port)
    assert ("rate limit state %s: not a tallyd rate limit state file; set aside as %s.damaged"
            % (path, path)) in daemon.log()
    with open(path + ".damaged", "rb") as f:
        assert f.read() == b"this is no state file\n"
    for n in range(3):
        client.ask(client_address="192.0.2.1")
    assert client.ask(client_address="192.0.2.1") == deferral(2, 3600)
    assert daemon.stop() == 0
    assert "1 keys saved" in daemon.log()

    with open(path, "rb") as f:                          # a whole file, then cut short
        whole = f.read()
    with open(path, "wb") as f:
        f.write(whole[:len(whole) - 3])
    os.unlink(path + ".damaged")
    starts = daemon.log().count(" started: ")
    daemon.start(wait_port=port)
    wait_for(lambda: daemon.log().count(" started: ") > starts, 15, "tallyd to start again")
    client = PolicyClient(port=port)
    assert ("rate limit state %s: cut short or damaged (its length does not match); set aside"
            % path) in daemon.log()
    assert os.path.getsize(path + ".damaged") == len(whole) - 3
    assert client.ask(client_address="192.0.2.1") == "dunno"    # started empty


def test_show_and_reset_a_rate_limited_key(tallyd, db):
    daemon, client = start(tallyd, db, "( [3, 3600], [10, 60] )")
    for n in range(3):
        assert client.ask(client_address="192.0.2.5") == "dunno"
    assert client.ask(client_address="192.0.2.5") == deferral(3, 3600)

    for which in ("rate:RateIP", "rate:client_address"):
        shown = daemon.ctl("show", which, "192.0.2.5").stdout
        assert "ratelimit RateIP\nfield client_address\n" in shown
        assert "limit 3 in 3600 seconds: load 3\nlimit 10 in 60 seconds: load 3\n" in shown
    shown = daemon.ctl("show", "rate:RateIP", "192.0.2.99").stdout
    assert "last never" in shown and "limit 3 in 3600 seconds: load 0\n" in shown
    # the counter form is another command: the Accounting table's totals
    daemon.ctl("flush")
    assert "count 3 " in daemon.ctl("show", "client_address", "192.0.2.5").stdout

    reset = daemon.ctl("reset", "rate:RateIP", "192.0.2.5").stdout
    assert "reset: its windows are empty now; they held:" in reset
    assert "limit 3 in 3600 seconds: load 3" in reset
    assert client.ask(client_address="192.0.2.5") == "dunno"
    assert "limit 3 in 3600 seconds: load 1\n" in daemon.ctl("show", "rate:RateIP",
                                                             "192.0.2.5").stdout

    wrong = daemon.ctl("show", "rate:NoSuch", "192.0.2.5", check=False)
    assert wrong.returncode == 1 and "no RateLimit plugin is named NoSuch" in wrong.stderr
    wrong = daemon.ctl("reset", "rate:RateIP", check=False)
    assert wrong.returncode == 2 and "usage: reset rate:PLUGIN KEY" in wrong.stderr

    # a key with its own limits from SqlUserConfig is shown against them
    db.execute("INSERT INTO relay_policies VALUES (9, 'p9', '{\"rate_limits\": [[1, 60]]}')")
    db.execute("INSERT INTO relay_hosts (client_address, relay_policy) VALUES "
               "('192.0.2.50', 9)")
    assert client.ask(client_address="192.0.2.50") == "dunno"
    assert client.ask(client_address="192.0.2.50") == deferral(1, 60)
    shown = daemon.ctl("show", "rate:RateIP", "192.0.2.50").stdout
    assert ("note: its limits are not the configured ones (uc_limits)\n"
            "limit 1 in 60 seconds: load 1\n") in shown


def test_a_refused_reload_leaves_the_limits_shown_alone(tallyd, db):
    """A reload is loaded whole (plugins set up) before it is refused: the
    limits tallyctl shows (and the state file is labelled with) change
    only when a config goes into force."""
    daemon, client = start(tallyd, db, "( [3, 3600] )")
    port = client.sock.getpeername()[1]

    def configured():            # a key never seen is shown against the configured limits
        return daemon.ctl("show", "rate:RateIP", "192.0.2.99").stdout

    assert "limit 3 in 3600 seconds: load 0\n" in configured()
    daemon.write_config(rate_config(port, db.config(), "( [5, 60] )", "workers = 0;\n"))
    assert daemon.ctl("reload", check=False).returncode == 1
    assert "limit 3 in 3600 seconds: load 0\n" in configured()
    daemon.write_config(rate_config(port, db.config(), "( [5, 60] )"))
    assert daemon.ctl("reload").stdout == "reloaded\n"
    assert "limit 5 in 60 seconds: load 0\n" in configured()


def assert_state_kept_in(daemon, port, journal):
    """A [2, 3600] limit reached, then a restart: the state file is in the
    journal directory and the client is still at its limit."""
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.6") == "dunno"
    assert client.ask(client_address="192.0.2.6") == "dunno"
    client = restart(daemon, port)
    assert os.path.exists(os.path.join(journal, "ratelimit.state"))
    assert client.ask(client_address="192.0.2.6") == deferral(2, 3600)


def test_the_state_is_kept_in_the_journal_directory_by_default(tallyd, db, tmp_path):
    journal = os.path.join(str(tmp_path), "journal")
    db.load_howto_tables()
    port = free_port()
    config = rate_config(port, db.config(), "( [2, 3600] )").replace(
        "flush_interval = 0.2;", 'flush_interval = 0.2; journal = "%s";' % journal)
    assert_state_kept_in(tallyd(config, wait_port=port), port, journal)


def test_without_a_database_the_journal_directory_is_made_for_the_state(tallyd, tmp_path):
    journal = os.path.join(str(tmp_path), "journal")     # no journal is opened to make it
    port = free_port()
    config = state_config(port, tmp_path, "( [2, 3600] )", "( [2, 3600] )").replace(
        'ratelimit_state = "%s/rl.state";' % tmp_path,
        'accounting = { journal = "%s"; };' % journal)
    assert_state_kept_in(tallyd(config, wait_port=port), port, journal)


RATELIMIT_DOC = os.path.join(os.path.dirname(__file__), "..", "..", "doc", "ratelimit.md")


def recipes():
    """The tallyd.conf blocks and the SQL block of "## Recipes" in
    doc/ratelimit.md, as an admin pastes them."""
    with open(RATELIMIT_DOC) as f:
        text = f.read()
    section = text[text.index("## Recipes\n"):] + "\n## "
    section = section[:section.index("\n## ", 1)]      # to the next section or the end
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", section, re.S | re.M)
    return ([block for _, block in blocks if block.startswith("listen = ")],
            [block for language, block in blocks if language == "sql"][0])


def recipe(text, port, database):
    """A recipe on `port` and `database`."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:%d" % port, text)
    return database + re.sub(r"port = \d+;", "port = %d;" % port, text)


def test_every_recipe_is_a_config_tallyd_accepts(db, tmp_path):
    confs, _ = recipes()
    assert len(confs) == 3
    for n, text in enumerate(confs):
        path = tmp_path / ("recipe%d.conf" % n)
        path.write_text(recipe(text, free_port(), db.config()))
        result = subprocess.run([TALLYD, "-t", "-c", str(path)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, (text, result.stderr)


def messages_accepted(client, user, limit, recipients=1, first=0):
    """Sends messages of `recipients` RCPT requests each until one is
    deferred or `limit` + 1 were sent: (how many passed, the deferral)."""
    for n in range(limit + 1):
        for _ in range(recipients):
            answer = client.ask(sasl_username=user, protocol_state="RCPT",
                                instance="%s-%d" % (user, first + n))
            if answer != "dunno":
                return n, answer
    return limit + 1, None


def test_the_submission_recipe_counts_messages_not_recipients(tallyd, db):
    port = free_port()
    daemon = tallyd(recipe(recipes()[0][0], port, db.config()), wait_port=port)
    client = PolicyClient(port=port)
    assert messages_accepted(client, "alice@example.org", 100, recipients=5) == \
        (100, deferral(100, 60))
    assert client.ask(sasl_username="", protocol_state="RCPT") == "dunno"   # not limited
    assert "evicted" not in daemon.log()


def test_the_sql_recipe_gives_some_users_their_own_limits(tallyd, db):
    _, sql = recipes()
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)
    port = free_port()
    daemon = tallyd(recipe(recipes()[0][2], port, db.config()), wait_port=port)
    client = PolicyClient(port=port)
    assert messages_accepted(client, "trainee@example.org", 10) == (10, deferral(10, 60))
    assert messages_accepted(client, "newsletter@example.org", 150) == (151, None)
    assert messages_accepted(client, "bob@example.org", 100) == (100, deferral(100, 60))
    db.execute("UPDATE rate_policies SET config = '{\"rate_limits\": [[12, 60]]}' "
               "WHERE sasl_username = 'trainee@example.org'")
    daemon.ctl("forget", "sasl_username", "trainee@example.org")
    assert messages_accepted(client, "trainee@example.org", 12, first=100) == \
        (12, deferral(12, 60))                     # new limits: its windows start afresh


def test_a_full_disk_at_a_save_keeps_the_last_whole_state_file(tallyd, tmp_path):
    """A save that cannot write (ENOSPC, from tests/lib/faultfs.c) is logged
    and leaves the file the last save wrote whole: the next start restores
    from it and sets nothing aside."""
    port = free_port()
    control = tmp_path / "fault"
    binary = preloaded(str(tmp_path), "tallyd-faultfs", build_preload(str(tmp_path), "faultfs"),
                       FAULTFS_MATCH="rl.state", FAULTFS_CONTROL=str(control))
    config = state_config(port, tmp_path, "( [2, 3600] )", "( [2, 3600] )")
    daemon = tallyd(config, binary=binary, wait_port=port)
    client = PolicyClient(port=port)
    assert [client.ask(client_address="192.0.2.9") for _ in range(2)] == ["dunno"] * 2
    client = restart(daemon, port)                    # saved whole
    assert client.ask(client_address="192.0.2.9") == deferral(2, 3600)
    assert [client.ask(client_address="192.0.2.10") for _ in range(2)] == ["dunno"] * 2
    control.write_text("enospc")
    assert daemon.stop() == 0                         # this save fails
    assert "rate limit state: cannot write" in daemon.log()
    control.write_text("ok")
    daemon.start(wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask(client_address="192.0.2.9") == deferral(2, 3600)
    assert client.ask(client_address="192.0.2.10") == "dunno"   # only in the failed save
    assert "set aside" not in daemon.log()
