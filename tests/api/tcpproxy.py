"""A TCP proxy on loopback in front of PostgreSQL that a test can cut and restore."""

import contextlib
import socket
import threading

import psycopg


class DatabaseProxy:
    """Forwards 127.0.0.1:<port> to the server of `url` (TCP or Unix socket)."""

    def __init__(self, url: str):
        params = psycopg.conninfo.conninfo_to_dict(url)
        host, port = params.get("host") or "/tmp", int(params.get("port") or 5432)
        if host.startswith("/"):
            self._target = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            self._target = (socket.AF_INET, (host, port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = psycopg.conninfo.make_conninfo(url, host="127.0.0.1", port=self.port)
        self._up = True
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """The database is gone: open connections drop, new ones are refused."""
        with self._lock:
            self._up = False
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._up:
                    _close(client)
                    continue
                family, address = self._target
                upstream = socket.socket(family, socket.SOCK_STREAM)
                upstream.connect(address)
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                for sock in (source, sink):
                    self._open.discard(sock)
                    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
