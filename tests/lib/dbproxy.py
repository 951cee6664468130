"""dbproxy.py: a TCP proxy between tallyd and MariaDB that can fail the way
networks and servers fail, on demand.

Modes (Proxy.mode, or a control file from the command line):
  None            forward everything
  "hang"          keep accepting and reading, forward and answer nothing: a
                  network partition or a server that stopped answering, not
                  one that refuses (bytes received meanwhile are dropped)
  "insert"        cut the connection when the client sends an INSERT
  "commit"        forward COMMIT to the server, then cut at once: the server
                  commits, the client never learns it (the unknown outcome)
  "commit-reply"  cut when the server's reply to COMMIT comes back
  "commit-hang"   swallow COMMIT and all that follows on that connection:
                  the server never commits (it rolls back when the link
                  closes), the client waits for an answer that never comes
The cut modes cut every `every`-th time they match; `cuts` counts them; a
cut switches to mode `then` when set (e.g. "hang": the client's next
connection hears nothing).
Leaving "hang" lets new traffic through again; connections that hung stay
silent until the client gives up on them, as after a real partition.

Used by the integration tests in-process, and by bench/run as a program:
  python3 tests/lib/dbproxy.py LISTEN_PORT TARGET_PORT CONTROL_FILE
runs until killed, in "hang" mode while CONTROL_FILE exists.
"""
import os
import socket
import sys
import threading
import time


class Proxy:
    def __init__(self, target_port, mode=None, every=1, port=0, then=None):
        self.target_port = target_port
        self.mode, self.then = mode, then
        self.every = every
        self.matches = 0
        self.cuts = 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _decide(self):
        with self.lock:
            self.matches += 1
            if self.matches % self.every:
                return False
            self.cuts += 1
            if self.then:
                self.mode = self.then
            return True

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "hang":
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            link = {"commit_sent": False, "open": True}
            threading.Thread(target=self._pump, args=(client, server, link, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, link, False),
                             daemon=True).start()

    def _swallow(self, sock):
        """Reads and drops whatever comes, answering nothing."""
        while True:
            try:
                if not sock.recv(65536):
                    break
            except OSError:
                break
        sock.close()

    def _cut(self, a, b, link):
        link["open"] = False
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump(self, source, sink, link, upstream):
        while link["open"]:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._cut(source, sink, link)
                return
            if self.mode == "hang" or link.get("hung"):
                link["hung"] = True       # swallowed, for good: the other side waits
                continue
            cut_after = False
            if upstream and self.mode == "insert" and b"INSERT INTO" in data and self._decide():
                self._cut(source, sink, link)
                return
            if upstream and self.mode == "commit-hang" and b"COMMIT" in data and self._decide():
                link["hung"] = True
                continue
            if upstream and b"COMMIT" in data:
                link["commit_sent"] = True
                cut_after = self.mode == "commit" and self._decide()
            if not upstream and link["commit_sent"]:
                link["commit_sent"] = False
                if self.mode == "commit-reply" and self._decide():
                    self._cut(source, sink, link)
                    return
            try:
                sink.sendall(data)
            except OSError:
                self._cut(source, sink, link)
                return
            if cut_after:
                self._cut(source, sink, link)
                return

    def close(self):
        self.running = False
        self.listener.close()


def main():
    listen_port, target_port, control = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    proxy = Proxy(target_port, port=listen_port)
    while True:
        proxy.mode = "hang" if os.path.exists(control) else None
        time.sleep(0.05)


if __name__ == "__main__":
    main()
