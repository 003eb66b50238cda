"""A recording TCP relay for capturing fuzz seeds: forwards loopback connections to a target and writes
each connection's two byte streams to files (<label>-<n>-c2s.bin, <label>-<n>-s2c.bin). Test utility only."""

import socket
import threading


class Relay:
    """Listens on 127.0.0.1 (port 0), relays every connection to `target`, records both directions."""

    def __init__(self, label, target, out_dir):
        self.label, self.target, self.out_dir = label, target, out_dir
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.lock = threading.Lock()
        self.pumps = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.count += 1
                n = self.count
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            base = f"{self.out_dir}/{self.label}-{n:03d}"
            for src, dst, name in ((client, upstream, "c2s"), (upstream, client, "s2c")):
                t = threading.Thread(target=self._pump, args=(src, dst, f"{base}-{name}.bin"), daemon=True)
                t.start()
                self.pumps.append(t)

    @staticmethod
    def _pump(src, dst, path):
        with open(path, "wb") as f:
            while True:
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                f.write(data)
                f.flush()
                try:
                    dst.sendall(data)
                except OSError:
                    break
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self, wait=5.0):
        """Stops accepting; waits (bounded) for the recorded connections to finish."""
        self.sock.close()
        for t in self.pumps:
            t.join(wait)
