"""A real uvicorn server on 127.0.0.1 (a free port), run in a background thread, for tests
that need real sockets: load, faults, graceful shutdown."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


@dataclass
class LoopbackServer:
    server: uvicorn.Server
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll ``/readyz`` until every model is loaded."""
        deadline = time.monotonic() + timeout_s
        while httpx.get(f"{self.url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "models not loaded in time"
            time.sleep(0.05)

    def refuses_connections(self) -> bool:
        """Whether a new TCP connection to the port is refused."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False


@contextmanager
def serve_on_loopback(app: FastAPI, **config: Any) -> Iterator[LoopbackServer]:
    """Run ``app`` with uvicorn (lifespan on) until the block exits, then shut it down the
    way SIGTERM does (``should_exit``) and wait for the thread, at most 30 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with others
    port = sock.getsockname()[1]
    # log_config=None: uvicorn leaves logging alone; its records reach pytest's caplog
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn exited during startup (see the log)"
            assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
            time.sleep(0.01)
        yield LoopbackServer(server, thread, port)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not shut down in 30 s"
