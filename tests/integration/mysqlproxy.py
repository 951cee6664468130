"""mysqlproxy.py: a TCP proxy between tallyd and MariaDB that can cut a
connection at a chosen point of a flush, to test exactly-once writes.

The MySQL protocol sends each statement as a COM_QUERY or COM_STMT_*
packet; a COMMIT is a COM_QUERY whose text is "COMMIT".  Modes:
  "insert"        cut when the client sends an INSERT (before COMMIT)
  "commit"        forward COMMIT to the server, then cut at once: the server
                  commits, the client never learns it (the unknown outcome)
  "commit-reply"  cut when the server's reply to COMMIT comes back
Each mode cuts every `every`-th time it matches.
"""
import socket
import threading


class Proxy:
    def __init__(self, target_port, mode=None, every=1):
        self.target_port = target_port
        self.mode = mode
        self.every = every
        self.matches = 0
        self.cuts = 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _decide(self):
        with self.lock:
            self.matches += 1
            if self.matches % self.every:
                return False
            self.cuts += 1
            return True

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            link = {"commit_sent": False, "open": True}
            threading.Thread(target=self._pump, args=(client, server, link, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, link, False),
                             daemon=True).start()

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
            cut_after = False
            if upstream and self.mode == "insert" and b"INSERT INTO" in data and self._decide():
                self._cut(source, sink, link)
                return
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
