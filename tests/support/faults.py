"""Failure injection on loopback, for the fault tests: a proxy that cuts connections, and
helpers to restart, hang (SIGSTOP) or fill a real redis-server. Nothing here mocks Redis:
every fault is one a real client sees from a real server."""

from __future__ import annotations

import socket
import threading
import time


class DroppingProxy:
    """A loopback TCP proxy to Redis that, when armed, forwards the next request and then
    closes the client's connection before any reply reaches it: a batch applied on the
    server but never acknowledged, the worst case for a retry."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = threading.Event()
        self.drops = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            cut = threading.Event()  # set: replies on this connection are swallowed
            threading.Thread(target=self._pump_requests, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._pump_replies, args=(upstream, client, cut), daemon=True).start()

    def _pump_requests(self, client, upstream, cut) -> None:
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if self.armed.is_set():
                self.armed.clear()
                self.drops += 1
                cut.set()
                upstream.sendall(data)
                time.sleep(0.2)  # let the server run the batch; its replies go nowhere
                break
            upstream.sendall(data)
        for sock in (client, upstream):
            try:
                sock.close()
            except OSError:
                pass

    @staticmethod
    def _pump_replies(upstream, client, cut) -> None:
        while True:
            try:
                data = upstream.recv(65536)
                if not data:
                    break
                if not cut.is_set():
                    client.sendall(data)
            except OSError:
                break

    def close(self) -> None:
        self.listener.close()
