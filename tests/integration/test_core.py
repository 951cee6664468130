"""test_core.py: the core daemon over real sockets — listeners, virtual hosts,
the protocol's edge cases, limits and timeouts, signals, daemon mode,
privileges, reload and the admin interfaces."""
import os
import pwd
import re
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from harness import (PolicyClient, TALLYD, build_preload, encode, free_port, postfix_request,
                     preloaded, sanitized, wait_for)


def raise_file_limit(wanted):
    """Raises this process's descriptor limit (tallyd started by the test
    inherits it), never lowering the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip("needs %d file descriptors, the hard limit is %d" % (wanted, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))


def action_config(port, action="dunno", extra=""):
    return ('listen = "127.0.0.1:%d";\n%s'
            'virtual_hosts = ( { port = %d; plugins = ( { name = "a"; module = "Action"; '
            'action = "%s"; } ); } );\n' % (port, extra, port, action))


@pytest.mark.concurrency
def test_2000_idle_connections_do_not_delay_other_clients(tallyd):
    raise_file_limit(4500)
    port = free_port()
    tallyd(action_config(port, "OK served"), wait_port=port)
    idle = [PolicyClient(port=port) for _ in range(2000)]
    started = time.monotonic()
    for _ in range(200):
        client = PolicyClient(port=port, timeout=2)
        assert client.ask() == "OK served"
        client.close()
    assert time.monotonic() - started < 10
    assert idle[1234].ask() == "OK served"        # an idle one still works
    for client in idle:
        client.close()


def test_two_virtual_hosts_and_a_unix_socket_answer_differently(tallyd, tmp_path):
    a, b = free_port(), free_port()
    path = str(tmp_path / "policy.sock")
    daemon = tallyd('listen = "127.0.0.1:%d,127.0.0.1:%d,unix:%s";\n'
                    'virtual_hosts = (\n'
                    ' { port = %d; plugins = ( { name = "x"; module = "Action"; action = "OK first"; } ); },\n'
                    ' { port = %d; plugins = ( { name = "y"; module = "Action"; action = "REJECT second"; } ); },\n'
                    ' { socket = "%s"; plugins = ( { name = "z"; module = "Action"; action = "HOLD unix"; } ); } );\n'
                    % (a, b, path, a, b, path), wait_port=a)
    assert PolicyClient(port=a).ask() == "OK first"
    assert PolicyClient(port=b).ask() == "REJECT second"
    assert PolicyClient(path=path).ask() == "HOLD unix"
    assert oct(os.stat(path).st_mode & 0o777) == "0o666"
    assert daemon.stop() == 0
    assert not os.path.exists(path)               # removed at exit


def test_listener_without_virtual_host_answers_dunno(tallyd):
    a, b = free_port(), free_port()
    daemon = tallyd('listen = "127.0.0.1:%d,127.0.0.1:%d";\n' % (a, b) +
                    'virtual_hosts = ( { port = %d; plugins = ( { name = "x"; module = "Action"; '
                    'action = "OK"; } ); } );\n' % a, wait_port=b)
    assert PolicyClient(port=b).ask() == "dunno"
    assert "no virtual host serves it" in daemon.log()


def test_ipv6_listener(tallyd):
    port = free_port()
    tallyd('listen = "[::1]:%d";\nvirtual_hosts = ( { port = %d; plugins = ( { name = "a"; '
           'module = "Action"; action = "OK v6"; } ); } );\n' % (port, port))
    sock = wait_for(lambda: _try_connect6(port), 10, "IPv6 listener")
    sock.sendall(encode(postfix_request()))
    assert sock.recv(100) == b"action=OK v6\n\n"


def _try_connect6(port):
    try:
        return socket.create_connection(("::1", port), timeout=5)
    except OSError:
        return None


def test_pipelined_requests_are_answered_in_order(tallyd):
    port = free_port()
    tallyd(action_config(port, "OK pipelined"), wait_port=port)
    client = PolicyClient(port=port)
    client.send(encode(postfix_request()) * 5)
    assert [client.read_answer() for _ in range(5)] == ["OK pipelined"] * 5


def test_request_split_into_small_writes_is_answered_once_complete(tallyd):
    port = free_port()
    tallyd(action_config(port, "OK split"), wait_port=port)
    client = PolicyClient(port=port)
    data = encode(postfix_request())
    for i in range(0, len(data), 7):
        client.send(data[i:i + 7])
        time.sleep(0.001)
    assert client.read_answer() == "OK split"
    assert client.ask() == "OK split"             # the connection goes on


def test_request_with_crlf_line_ends_is_answered(tallyd, tmp_path):
    """A client typing at a terminal (telnet, nc -C) ends lines with CRLF;
    the values reach the plugins without the CR."""
    port = free_port()
    daemon = tallyd('listen = "127.0.0.1:%d";\ndatabase = { path = "%s/d.sqlite"; };\n'
                    'accounting = { flush_interval = 0.2; };\n'
                    'virtual_hosts = ( { port = %d; plugins = ( { name = "a"; '
                    'module = "Accounting"; fields = "sender"; } ); } );\n'
                    % (port, tmp_path, port), wait_port=port)
    client = PolicyClient(port=port)
    client.send(b"request=smtpd_access_policy\r\nsender=crlf@example.org\r\n\r\n")
    assert client.read_answer() == "dunno"
    assert client.ask(sender="crlf@example.org") == "dunno"    # LF, the same key
    assert "\ncount 2 " in daemon.ctl("show", "sender", "crlf@example.org").stdout


@pytest.mark.parametrize("payload, reason", [
    (b"request=smtpd_access_policy\ngarbage line\n\n", "line without '='"),
    (b"request=smtpd_access_policy\nsender=a\x00b\n\n", "NUL byte"),
    (b"request=smtpd_access_policy\nsender=" + b"x" * 70000 + b"\n\n", "larger than max_request_size"),
], ids=["no-equals", "nul-byte", "oversize"])
def test_malformed_request_closes_only_that_connection(tallyd, payload, reason):
    port = free_port()
    daemon = tallyd(action_config(port, "OK"), wait_port=port)
    bystander = PolicyClient(port=port)
    bad = PolicyClient(port=port)
    bad.send(payload)
    assert bad.closed_by_server()
    wait_for(lambda: reason in daemon.log(), 5, "the log line")
    line = [l for l in daemon.log().splitlines() if reason in l][0]
    assert "127.0.0.1:" in line                      # names the peer
    assert bystander.ask() == "OK"
    assert daemon.stats()["malformed"] == "1"


def test_too_many_attributes_closes_the_connection(tallyd):
    port = free_port()
    daemon = tallyd(action_config(port, "OK", "max_attributes = 10;\n"), wait_port=port)
    client = PolicyClient(port=port)
    client.send(encode(postfix_request()))
    assert client.closed_by_server()
    assert "too many attributes" in daemon.log()


def test_idle_connection_closed_after_keepalive_timeout(tallyd):
    port = free_port()
    daemon = tallyd(action_config(port, "OK", "keepalive_timeout = 2;\n"), wait_port=port)
    client = PolicyClient(port=port)
    assert client.ask() == "OK"
    started = time.monotonic()
    assert client.closed_by_server(timeout=10)
    assert 1.9 <= time.monotonic() - started < 6     # never less than keepalive_timeout
    assert daemon.stats()["timeouts"] == "1"


def test_half_sent_request_closed_after_request_timeout(tallyd):
    port = free_port()
    daemon = tallyd(action_config(port, "OK", "request_timeout = 2;\n"), wait_port=port)
    client = PolicyClient(port=port)
    client.send(b"request=smtpd_access_policy\nclient_address=192.0.2.1\n")
    assert client.closed_by_server(timeout=10)
    wait_for(lambda: "request_timeout" in daemon.log(), 5, "the request_timeout log line")


def test_connections_beyond_max_connections_are_refused(tallyd):
    port = free_port()
    daemon = tallyd(action_config(port, "OK", "max_connections = 10;\n"), wait_port=port)
    wait_for(lambda: daemon.stats()["connections_open"] == "0", 5, "the probe to close")
    clients = [PolicyClient(port=port) for _ in range(10)]
    for c in clients:
        assert c.ask() == "OK"
    extra = PolicyClient(port=port)
    assert extra.closed_by_server()
    assert clients[9].ask() == "OK"
    assert "max_connections (10) reached" in daemon.log()
    assert daemon.stats()["connections_refused"] == "1"


def test_request_sent_just_before_sigterm_is_answered(tallyd):
    port = free_port()
    daemon = tallyd(action_config(port, "OK last"), wait_port=port)
    client = PolicyClient(port=port)
    client.send(encode(postfix_request()))
    daemon.send_signal(signal.SIGTERM)
    assert client.read_answer() == "OK last"
    assert daemon.process.wait(10) == 0
    assert "stopped" in daemon.log()


def test_check_mode_accepts_good_and_reports_bad_configs(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text(action_config(free_port()))
    result = subprocess.run([TALLYD, "-t", "-c", str(good)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text('listen = "127.0.0.1:1";\nworkers = 0;\nfoo = 1;\n')
    result = subprocess.run([TALLYD, "-t", "-c", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "%s:2: workers must be 1..1024, got 0" % bad in result.stderr
    assert "%s:3: unknown setting 'foo'" % bad in result.stderr


def test_daemon_mode_reports_ready_and_writes_pid_file(tmp_path):
    port = free_port()
    pid_file = tmp_path / "tallyd.pid"
    conf = tmp_path / "d.conf"
    conf.write_text('log_target = "stderr"; control_socket = "";\npid_file = "%s";\n' % pid_file +
                    'database = { path = "%s/d.sqlite"; };\n' % tmp_path +
                    action_config(port, "OK daemon"))
    assert subprocess.run([TALLYD, "-c", str(conf)], timeout=30).returncode == 0
    assert PolicyClient(port=port).ask() == "OK daemon"   # ready when the command returned
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
             open("/proc/%d/stat" % pid).read().split()[2] == "Z", 10, "the daemon to exit")
    wait_for(lambda: not pid_file.exists(), 5, "the pid file to go")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_pid_file_planted_by_the_tallyd_user_is_replaced_not_written_through(tallyd, tmp_path,
                                                                            plant):
    """The run-as user may write the pid file's directory: a symlink or a hard
    link it leaves at the pid file's name must not give it root's write (or a
    chown) on another file."""
    run = tempfile.mkdtemp(prefix="tallyd-run-")
    os.chmod(run, 0o777)
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    os.chmod(str(victim), 0o600)
    pid_file = os.path.join(run, "tallyd.pid")
    (os.symlink if plant == "symlink" else os.link)(str(victim), pid_file)
    port = free_port()
    daemon = tallyd('user = "nobody"; group = "nogroup"; pid_file = "%s";\n' % pid_file +
                    'database = { path = "%s/db.sqlite"; };\n' % run +
                    action_config(port, "OK"), wait_port=port)
    assert victim.read_text() == "root:secret\n"
    assert os.stat(str(victim)).st_uid == 0
    assert not os.path.islink(pid_file)
    assert int(open(pid_file).read()) == daemon.process.pid
    assert os.stat(pid_file).st_uid == 0


def test_daemon_start_failure_exits_nonzero(tmp_path):
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    conf = tmp_path / "d.conf"
    conf.write_text('log_target = "stderr"; control_socket = "";\n' + action_config(port))
    result = subprocess.run([TALLYD, "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:%d: Address already in use" % port in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_privileges_are_dropped_after_binding(tallyd):
    writable = tempfile.mkdtemp(prefix="tallyd-nobody-")       # nobody must reach it
    os.chmod(writable, 0o777)
    port = free_port()
    daemon = tallyd('user = "nobody"; group = "nogroup";\n'
                    'database = { path = "%s/db.sqlite"; };\n' % writable +
                    action_config(port, "OK nobody"), wait_port=port)
    # an answer, not just a connection: the socket listens before the drop
    assert PolicyClient(port=port).ask() == "OK nobody"
    status = open("/proc/%d/status" % daemon.process.pid).read()
    uid = [l for l in status.splitlines() if l.startswith("Uid:")][0].split()
    assert int(uid[1]) == pwd.getpwnam("nobody").pw_uid
    assert PolicyClient(port=port).ask() == "OK nobody"


@pytest.mark.concurrency
def test_reload_under_load_loses_no_request(tallyd):
    port, new_port = free_port(), free_port()
    daemon = tallyd(action_config(port, "OK before"), wait_port=port)
    failures, answers, stop = [], [], threading.Event()

    def load():
        try:
            client = PolicyClient(port=port)
            while not stop.is_set():
                answers.append(client.ask())
        except Exception as error:   # any failure is the test's failure
            failures.append(error)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(5):
        daemon.write_config('listen = "127.0.0.1:%d,127.0.0.1:%d";\n' % (port, new_port) +
                            'virtual_hosts = ( { port = %d; plugins = ( { name = "a"; module = "Action"; '
                            'action = "OK after %d"; } ); } );\n' % (port, i))
        if i % 2:
            daemon.send_signal(signal.SIGHUP)
        else:
            assert daemon.ctl("reload").stdout == "reloaded\n"
    wait_for(lambda: answers and answers[-1] == "OK after 4", 10, "the last reload to apply")
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert len(answers) > 100
    assert PolicyClient(port=new_port).ask() == "dunno"     # the new listener works



@pytest.mark.concurrency
def test_reloads_that_reorder_listen_under_connection_churn_keep_every_socket(tallyd):
    """Reloads that reorder `listen` move the bound sockets over while
    clients keep connecting: every connection is answered by the virtual
    host of the port it reached, none is refused, and (under TSan, with
    debug logging, which makes the acceptor read each listener's spec) the
    acceptor never reads a listener that a reload moves."""
    ports = [free_port() for _ in range(3)]
    orders = [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0], [0, 2, 1], [1, 0, 2]]

    def config(order, generation):
        return ('log_level = "debug";\nlisten = ( %s );\nvirtual_hosts = ( %s );\n' % (
            ", ".join('"127.0.0.1:%d"' % ports[k] for k in order),
            ", ".join('{ port = %d; plugins = ( { name = "a"; module = "Action"; '
                      'action = "OK %d %d"; } ); }' % (p, p, generation) for p in ports)))

    daemon = tallyd(config(orders[0], 0), wait_port=ports[0])
    failures, answers, stop = [], [], threading.Event()

    def churn(first):
        k = first
        while not stop.is_set():
            port = ports[k % len(ports)]
            k += 1
            try:
                client = PolicyClient(port=port)
                answer = client.ask()
                client.close()
            except Exception as error:   # a refused or dropped connection fails the test
                failures.append((port, error))
                return
            if answer.split()[:2] != ["OK", str(port)]:
                failures.append((port, answer))
            answers.append(answer)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    reloads = 18
    for i in range(1, reloads + 1):
        daemon.write_config(config(orders[i % len(orders)], i))
        if i % 2:
            daemon.send_signal(signal.SIGHUP)
        else:
            assert daemon.ctl("reload").stdout == "reloaded\n"
        wait_for(lambda: daemon.log().count(" reloaded") == i, 30, "reload %d" % i)
        count = len(answers)
        wait_for(lambda: len(answers) >= count + 8 or failures, 30, "answers after reload %d" % i)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert "no longer listening" not in daemon.log()      # every socket moved, none rebound
    assert "ThreadSanitizer" not in daemon.log()
    for port in ports:
        assert PolicyClient(port=port).ask() == "OK %d %d" % (port, reloads)
    assert daemon.stop() == 0

@pytest.mark.skipif(sanitized(), reason="tests/lib/reuse.c cannot wrap a sanitizer's allocator")
def test_a_worker_idle_across_two_reloads_takes_the_last_configs_limits(tallyd, tmp_path):
    """One worker serves a request under a reloaded config, then nothing
    during two more reloads; tests/lib/reuse.c makes the last config take
    the address of the one the worker served under (an allocator may).  The
    worker must tell them apart by generation, not by address, or it keeps
    max_attributes = 10 and drops a request the last config allows."""
    port = free_port()
    binary = preloaded(str(tmp_path), "tallyd-reuse", build_preload(str(tmp_path), "reuse"))

    def reload(limit):
        daemon.write_config(action_config(port, "OK", "workers = 1;\nmax_attributes = %d;\n" % limit))
        assert daemon.ctl("reload").stdout == "reloaded\n"

    daemon = tallyd(action_config(port, "OK", "workers = 1;\n"), binary=binary, wait_port=port)
    reload(10)                                       # the start-up config is never freed
    client = PolicyClient(port=port)
    client.send(encode(postfix_request()))
    assert client.closed_by_server()                 # over 10 attributes
    reload(11)
    reload(100)                                      # where max_attributes = 10 was
    assert PolicyClient(port=port).ask() == "OK"
    assert daemon.log().count("too many attributes") == 1, daemon.log()


def test_bad_reload_is_refused_and_the_running_config_stays(tallyd):
    port = free_port()
    daemon = tallyd(action_config(port, "OK kept"), wait_port=port)
    daemon.write_config(action_config(port, "OK new") + "workers = 0;\n")
    result = daemon.ctl("reload", check=False)
    assert result.returncode == 1
    assert "workers must be 1..1024" in result.stderr
    assert "reload refused" in daemon.log()
    assert PolicyClient(port=port).ask() == "OK kept"


def test_stats_count_connections_and_requests(tallyd):
    port = free_port()
    daemon = tallyd(action_config(port, "DEFER_IF_PERMIT busy"), wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(7):
        client.ask()
    stats = daemon.stats()
    assert stats["requests"] == "7"
    assert stats["answers defer_if_permit"] == "7"
    assert int(stats["connections_total"]) >= 2          # the readiness probe and ours
    assert stats["connections_open"] == "1"
    assert "vhost port %d requests 7 answered 7" % port in daemon.ctl("stats").stdout


def test_prometheus_metrics(tallyd):
    port, metrics = free_port(), free_port()
    tallyd(action_config(port, "OK", 'metrics_listen = "127.0.0.1:%d";\n' % metrics),
           wait_port=port)
    client = PolicyClient(port=port)
    for _ in range(3):
        client.ask()
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics, timeout=5).read().decode()
    assert "tallyd_requests_total 3" in body
    assert 'tallyd_answers_total{action="ok"} 3' in body
    assert 'tallyd_plugin_calls_total{vhost="port %d",plugin="a"} 3' % port in body
    # every metric has its HELP and TYPE, and every value is written plainly
    helped = set(re.findall(r"^# HELP (\w+) \S", body, re.M))
    typed = set(re.findall(r"^# TYPE (\w+) (?:counter|gauge)$", body, re.M))
    samples = re.findall(r"^(\w+)(?:\{[^}]*\})? (\S+)$", body, re.M)
    assert samples and {name for name, _ in samples} <= helped == typed
    for name, text in samples:
        assert text == repr(float(text)).removesuffix(".0"), (name, text)


def test_slow_and_idle_admin_clients_hold_back_no_other(tallyd):
    """Ten idle connections and one dripping a byte a second, on the metrics
    port and on the control socket: tallyctl and a scrape are answered at
    once, the idle ones are closed after their deadline, and SIGTERM does
    not wait for any of them."""
    port, metrics = free_port(), free_port()
    daemon = tallyd(action_config(port, "OK", 'metrics_listen = "127.0.0.1:%d";\n' % metrics),
                    wait_port=port)
    idle = [socket.create_connection(("127.0.0.1", metrics)) for _ in range(10)]
    for _ in range(10):
        unix = socket.socket(socket.AF_UNIX)
        unix.connect(daemon.control)
        idle.append(unix)
    drippers = [socket.create_connection(("127.0.0.1", metrics)), socket.socket(socket.AF_UNIX)]
    drippers[1].connect(daemon.control)
    stop = threading.Event()

    def drip():
        while not stop.is_set():
            for s in drippers:
                try:
                    s.send(b"G")
                except OSError:
                    pass
            stop.wait(1.0)
    dripping = threading.Thread(target=drip)
    dripping.start()
    try:
        for _ in range(3):
            started = time.monotonic()
            assert "requests" in daemon.ctl("stats").stdout
            body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics,
                                          timeout=5).read().decode()
            assert "tallyd_requests_total" in body
            assert time.monotonic() - started < 1.0
        # a connection that never completes its request is closed at its deadline
        idle[0].settimeout(15)
        assert idle[0].recv(100) == b""
        started = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        dripping.join()
        for s in idle + drippers:
            s.close()


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_acceptor_waits_instead_of_spinning(tallyd):
    """With its open files limit reached, tallyd neither spins nor floods the
    log; the clients wait in the backlog and are served once descriptors
    are free."""
    port = free_port()
    daemon = tallyd(action_config(port, "OK"), wait_port=port)
    pid = daemon.process.pid
    in_use = len(os.listdir("/proc/%d/fd" % pid))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 5, in_use + 5))
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    for s in held:                                 # these five use up the limit
        s.sendall(encode(postfix_request()))
        s.recv(100)
    waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    before = cpu_seconds(pid)
    time.sleep(3)                                  # measuring a spin needs a span of time
    assert cpu_seconds(pid) - before < 0.5
    assert daemon.log().count("cannot accept on") <= 1
    for s in held:
        s.close()
    client = PolicyClient(port=port)               # queued behind the five waiting
    for s in waiting:
        s.sendall(encode(postfix_request()))
        s.settimeout(10)
        assert b"action=OK" in s.recv(100)
        s.close()
    assert client.ask() == "OK"


def test_tallyctl_exits_2_for_a_wrong_command_line_and_1_for_an_error(tallyd):
    """Its man page: 2 when the command line is wrong, 1 when tallyd
    answers with an error about a right one."""
    port = free_port()
    daemon = tallyd(action_config(port), wait_port=port)
    for args, said in ((("bogus",), "unknown command 'bogus'"),
                       (("show", "client_address"), "usage: show FIELD KEY [TIME]"),
                       (("forget",), "usage: forget FIELD KEY"),
                       (("show", "client_address", "k", "2026-11", "extra"), "usage: show")):
        result = daemon.ctl(*args, check=False)
        assert result.returncode == 2 and said in result.stderr, (args, result)
    result = daemon.ctl("show", "no_such_field", "k", check=False)
    assert result.returncode == 1
    assert "no accounting table keeps no_such_field" in result.stderr


def test_tallyctl_says_when_tallyd_is_not_there(tmp_path):
    ctl = os.path.join(os.path.dirname(TALLYD), "tallyctl")
    result = subprocess.run([ctl, "-s", str(tmp_path / "none.sock"), "stats"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "is tallyd running" in result.stderr
