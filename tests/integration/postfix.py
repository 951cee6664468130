"""postfix.py: a private Postfix instance for end-to-end tests, configured
with the main.cf block of doc/postfix.md, and a recording policy proxy to
put between it and tallyd.

The instance has its own config, queue and data directories and a maillog
file; it listens on a free loopback port, accepts mail from 127.0.0.0/8 and
delivers nothing (every transport is discard:).  Its policy settings are
doc_main_cf(): the block an admin pastes from doc/postfix.md, read from the
file, appended to main.cf as it is, with only the policy server's address
filled in.  Starting Postfix needs root.  smtp_source() drives it with
Postfix's own smtp-source.
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading

from harness import TOP, free_port, wait_for

DOC = os.path.join(TOP, "doc", "postfix.md")
# The policy server's address in the doc's block: the how-to's virtual host.
DOC_ADDRESS = "127.0.0.1:12346"


def doc_main_cf(policy_port):
    """The main.cf block under "## main.cf" in doc/postfix.md, exactly as the
    doc shows it, with DOC_ADDRESS replaced by 127.0.0.1:policy_port, the
    one change the doc tells an admin to make when tallyd listens elsewhere."""
    with open(DOC) as f:
        text = f.read()
    match = re.search(r"^## main\.cf\n.*?^```\n(.*?)^```$", text, re.S | re.M)
    assert match, "%s: no fenced block under '## main.cf'" % DOC
    block = match.group(1)
    assert block.count(DOC_ADDRESS) == 1, \
        "%s: the main.cf block must name %s once, the address the test fills in" % (DOC, DOC_ADDRESS)
    return block.replace(DOC_ADDRESS, "127.0.0.1:%d" % policy_port)


class Postfix:
    def __init__(self, main_cf):
        """A private instance whose main.cf ends with the text main_cf (the
        doc's block), pasted as it is."""
        # Postfix's own processes (user postfix) must reach it: not under
        # pytest's private temporary directories
        directory = tempfile.mkdtemp(prefix="tallyd-postfix-")
        os.chmod(directory, 0o755)
        self.directory = directory
        self.etc = os.path.join(directory, "etc")
        self.port = free_port()
        self.maillog = os.path.join(directory, "maillog")
        os.makedirs(self.etc)
        for name in ("queue", "data"):
            os.makedirs(os.path.join(directory, name))
        shutil.copy("/usr/share/postfix/main.cf.debian", os.path.join(self.etc, "main.cf"))
        shutil.copy("/etc/postfix/master.cf", os.path.join(self.etc, "master.cf"))
        # The instance itself; no policy setting here: those are the doc's.
        self.postconf("-e", "queue_directory=%s/queue" % directory,
                      "data_directory=%s/data" % directory, "mydestination=",
                      "myhostname=e2e.example.org", "mynetworks=127.0.0.0/8",
                      "inet_interfaces=loopback-only", "default_transport=discard:",
                      "relay_transport=discard:", "local_transport=discard:",
                      "alias_maps=", "alias_database=", "compatibility_level=3.6",
                      "smtpd_relay_restrictions=permit_mynetworks,reject",
                      "maillog_file=" + self.maillog,
                      "maillog_file_prefixes=/var,/dev/stdout," + directory)
        self.postconf("-Me", "%d/inet=%d inet n - n - - smtpd" % (self.port, self.port))
        self.postconf("-F", "*/*/chroot = n")
        with open(os.path.join(self.etc, "main.cf"), "a") as f:
            f.write("\n" + main_cf)
        shutil.chown(os.path.join(directory, "data"), "postfix")

    def postconf(self, *args):
        subprocess.run(["postconf", "-c", self.etc, *args], check=True, capture_output=True)

    def check(self):
        """postfix check: (exit status, what it printed).  postfix(1) prints
        its problems only to a terminal (or syslog), so it runs under
        script(1)."""
        result = subprocess.run(["script", "-qec", "postfix -c %s check" % self.etc, "/dev/null"],
                                capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr

    def start(self):
        """Starts Postfix and waits for an smtpd's greeting: an smtpd that
        dies on its configuration fails here, with the maillog."""
        result = subprocess.run(["postfix", "-c", self.etc, "start"], capture_output=True, text=True)
        try:
            assert result.returncode == 0, result.stdout + result.stderr
            wait_for(self._greets, 20, "an smtpd's 220 greeting", interval=0.2)
        except AssertionError as e:
            log = self.log()
            self.stop()             # the fixture will not: it never got the instance
            raise AssertionError("%s; maillog:\n%s" % (e, log)) from None

    def _greets(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.settimeout(5)
                greeting = s.recv(512)
                s.sendall(b"QUIT\r\n")
                return greeting.startswith(b"220 ")
        except OSError:
            return False

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def smtp_source(port, messages, recipients=1, length=1000):
    """Sends `messages` messages of `recipients` recipients each, one
    message per session (-s 1), with smtp-source; returns its result."""
    return subprocess.run(["/usr/sbin/smtp-source", "-c", "-m", str(messages),
                           "-r", str(recipients), "-l", str(length), "-s", "1",
                           "-f", "sender@example.org", "-t", "rcpt@example.net",
                           "127.0.0.1:%d" % port], capture_output=True, text=True, timeout=120)


class RecordingPolicyServer:
    """A policy proxy: keeps each request's attributes and passes it on to
    the policy server on upstream_port, over one connection per connection
    Postfix opens, and passes its answer back.  When the upstream server
    cannot be reached or closes, it closes Postfix's connection too."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.requests, self.connections = [], 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.listener.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            with conn, socket.create_connection(("127.0.0.1", self.upstream_port),
                                                timeout=30) as upstream:
                data = answers = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                    while b"\n\n" in data:
                        request, data = data.split(b"\n\n", 1)
                        self.requests.append(dict(line.decode().split("=", 1)
                                                  for line in request.split(b"\n")))
                        upstream.sendall(request + b"\n\n")
                        while b"\n\n" not in answers:
                            chunk = upstream.recv(65536)
                            if not chunk:
                                return
                            answers += chunk
                        answer, answers = answers.split(b"\n\n", 1)
                        conn.sendall(answer + b"\n\n")
        except OSError:
            return
