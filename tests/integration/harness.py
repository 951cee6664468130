"""harness.py: what the integration tests use to drive tallyd for real.

Tallyd starts the daemon (TALLYD_BIN, default the built ./tallyd) on a config
text, in the foreground, logging to a file, and waits until it answers.
PolicyClient speaks the Postfix policy protocol over TCP or a unix socket.
wait_for() polls a condition until a deadline: tests never sleep to
synchronise.
"""
import os
import signal
import socket
import subprocess
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TALLYD = os.environ.get("TALLYD_BIN") or os.path.join(TOP, "tallyd")
TALLYCTL = os.path.join(os.path.dirname(TALLYD), "tallyctl")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=10.0, what="condition", interval=0.02):
    """Polls condition() until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def postfix_request(**attributes):
    """An END-OF-MESSAGE request with every attribute Postfix sends."""
    request = {
        "request": "smtpd_access_policy", "protocol_state": "END-OF-MESSAGE",
        "protocol_name": "ESMTP", "helo_name": "client.example.org", "queue_id": "4Fxyz123",
        "sender": "sender@example.org", "recipient": "", "recipient_count": "1",
        "client_address": "192.0.2.1", "client_name": "client.example.org",
        "reverse_client_name": "client.example.org", "instance": "1a2b.3c4d.5e6f.0",
        "sasl_method": "", "sasl_username": "", "sasl_sender": "", "size": "1000",
        "ccert_subject": "", "ccert_issuer": "", "ccert_fingerprint": "",
        "ccert_pubkey_fingerprint": "", "encryption_protocol": "", "encryption_cipher": "",
        "encryption_keysize": "0", "etrn_domain": "", "stress": "", "server_address": "127.0.0.1",
        "server_port": "25", "policy_context": "", "compatibility_level": "3.6",
        "mail_version": "3.7.11",
    }
    request.update({k: str(v) for k, v in attributes.items()})
    return request


def encode(attributes):
    return "".join("%s=%s\n" % kv for kv in attributes.items()).encode() + b"\n"


class PolicyClient:
    """One persistent policy connection, as Postfix's smtpd keeps."""

    def __init__(self, port=None, path=None, timeout=10.0):
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_answer(self):
        """The action text of the next answer; EOFError when the server closed."""
        while b"\n\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("tallyd closed the connection")
            self.buffer += chunk
        answer, self.buffer = self.buffer.split(b"\n\n", 1)
        assert answer.startswith(b"action="), answer
        return answer[len(b"action="):].decode()

    def ask(self, **attributes):
        self.send(encode(postfix_request(**attributes)))
        return self.read_answer()

    def closed_by_server(self, timeout=10.0):
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def preloaded(directory, name, library, **env):
    """A script that runs tallyd with `library` preloaded and `env` set; a
    sanitized build is told that its runtime is not the first library."""
    binary = os.path.abspath(TALLYD)
    script = os.path.join(directory, name)
    settings = " ".join('%s="%s"' % kv for kv in env.items())
    with open(script, "w") as f:
        f.write('#!/bin/sh\nexec env LD_PRELOAD=%s %s '
                'ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" '
                '%s "$@"\n' % (library, settings, binary))
    os.chmod(script, 0o755)
    return script


def sanitized():
    """True when tallyd is built with a sanitizer (its runtime replaces the
    allocator, which a preloaded allocation shim cannot stand in front of)."""
    with open(TALLYD, "rb") as f:
        binary = f.read()
    return b"__asan_init" in binary or b"__tsan_init" in binary


def build_preload(directory, name):
    """tests/lib/NAME.c as a shared library in `directory` (see there)."""
    source = os.path.join(os.path.dirname(__file__), "..", "lib", name + ".c")
    library = os.path.join(directory, name + ".so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", library, source, "-ldl"], check=True)
    return library


class Tallyd:
    """A tallyd process started on a config text."""

    def __init__(self, directory, config, name="tallyd", binary=None):
        self.directory = directory
        self.name = name
        self.config_path = os.path.join(directory, name + ".conf")
        self.log_path = os.path.join(directory, name + ".log")
        self.control = os.path.join(directory, name + ".ctl")
        self.binary = binary or TALLYD
        self.write_config(config)
        self.process = None

    def write_config(self, config):
        """Writes the config; a daemon without a database setting gets a
        SQLite file of its own in the test's directory."""
        header = 'log_target = "stderr";\ncontrol_socket = "%s";\n' % self.control
        if "database" not in config:
            header += 'database = { path = "%s/%s.sqlite"; };\n' % (self.directory, self.name)
        with open(self.config_path, "w") as f:
            f.write(header + config)

    def start(self, wait_port=None, wait_path=None, args=("-f",)):
        self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen([self.binary, *args, "-c", self.config_path],
                                        stdout=self.log_file, stderr=self.log_file)
        if wait_port or wait_path:
            wait_for(lambda: self._answers(wait_port, wait_path), 15,
                     "tallyd to answer (log: %s)" % self.log())
            # the port listens before privileges drop and the database side
            # starts; "started" is logged when everything runs
            wait_for(lambda: " started: " in self.log(), 15, "tallyd's start-up to end")
        return self

    def _answers(self, port, path):
        if self.process.poll() is not None:
            raise AssertionError("tallyd exited with %s:\n%s" % (self.process.returncode, self.log()))
        try:
            client = PolicyClient(port=port, path=path, timeout=5)
            client.close()
            return True
        except OSError:
            return False

    def send_signal(self, sig):
        self.process.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops tallyd and returns its exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("tallyd did not stop within %d s:\n%s" % (timeout, self.log()))
        self.log_file.close()
        return status

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def ctl(self, *args, check=True):
        """Runs tallyctl against this instance; returns its stdout."""
        result = subprocess.run([TALLYCTL, "-s", self.control, *args], capture_output=True,
                                text=True, timeout=60)
        if check:
            assert result.returncode == 0, "tallyctl %s: %s\n--- tallyd's log, last lines:\n%s" % (
                " ".join(args), result.stderr, "\n".join(self.log().splitlines()[-30:]))
        return result

    def stats(self):
        """tallyctl stats as a dict of name -> value (multi-word names joined)."""
        out = {}
        for line in self.ctl("stats").stdout.splitlines():
            words = line.split()
            out[" ".join(words[:-1])] = words[-1]
        return out
