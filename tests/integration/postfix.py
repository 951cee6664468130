"""postfix.py: a private Postfix instance for end-to-end tests, and a
recording policy server to put in front of tallyd.

The instance has its own config, queue and data directories and a maillog
file; it listens on a free loopback port, accepts mail from 127.0.0.0/8 and
delivers nothing (every transport is discard:).  Starting Postfix needs
root.  smtp_source() drives it with Postfix's own smtp-source.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import threading

from harness import free_port, wait_for


class Postfix:
    def __init__(self, restrictions):
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
        self.postconf("-e", "queue_directory=%s/queue" % directory,
                      "data_directory=%s/data" % directory, "mydestination=",
                      "myhostname=e2e.example.org", "mynetworks=127.0.0.0/8",
                      "inet_interfaces=loopback-only", "default_transport=discard:",
                      "relay_transport=discard:", "local_transport=discard:",
                      "alias_maps=", "alias_database=", "compatibility_level=3.6",
                      "smtpd_relay_restrictions=permit_mynetworks,reject",
                      "maillog_file=" + self.maillog,
                      "maillog_file_prefixes=/var,/dev/stdout," + directory,
                      "smtpd_policy_service_timeout=10s",
                      "smtpd_end_of_data_restrictions=" + restrictions)
        self.postconf("-Me", "%d/inet=%d inet n - n - - smtpd" % (self.port, self.port))
        self.postconf("-F", "*/*/chroot = n")
        shutil.chown(os.path.join(directory, "data"), "postfix")

    def postconf(self, *args):
        subprocess.run(["postconf", "-c", self.etc, *args], check=True, capture_output=True)

    def start(self):
        result = subprocess.run(["postfix", "-c", self.etc, "start"], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr + self.log()
        wait_for(self._listening, 20, "Postfix to listen (maillog: %s)" % self.log())

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            return True
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
    """Answers DUNNO to every request and keeps each request's attributes."""

    def __init__(self):
        self.requests, self.connections = [], 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
            while b"\n\n" in data:
                request, data = data.split(b"\n\n", 1)
                self.requests.append(dict(line.decode().split("=", 1)
                                          for line in request.split(b"\n")))
                conn.sendall(b"action=DUNNO\n\n")
