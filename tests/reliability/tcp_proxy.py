"""A TCP proxy that a test can cut: the service behind it then sees its server unreachable.

While cut, every open connection is closed and new ones are accepted and closed at once, as
a server that went away does; ``restore`` lets connections through again. It counts the bytes
the server sent its clients (``downloaded``): what a client read from it.
"""

from __future__ import annotations

import contextlib
import socket
import threading

BUFFER = 65536


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self.downloaded = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target, source is server),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, download: bool) -> None:
        try:
            while data := source.recv(BUFFER):
                target.sendall(data)
                if download:
                    with self._lock:
                        self.downloaded += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
