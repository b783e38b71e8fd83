"""uvicorn inside the daemon's event loop, without its signal handling: ``ticketd serve`` owns SIGTERM and
SIGINT (it drains the receivers, the worker and the outbox in order) and stops the web server itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from maild.config import Listen

log = logging.getLogger("ticketd.web")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield   # the daemon's handlers stay in place


class WebServer:
    def __init__(self, app: ASGIApp, listen: Listen) -> None:
        config = uvicorn.Config(app, host=listen.host, port=listen.port, lifespan="off", access_log=False,
                                log_config=None, server_header=False, proxy_headers=False)
        # Our access log (maild/web/app.py) writes one line per request, with a client link's key masked;
        # uvicorn's own would write the path as it came.
        logging.getLogger("uvicorn.access").disabled = True
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self.listen = listen

    async def start(self) -> int:
        """Listen; the port (useful when the configured one is 0). OSError when the address cannot be
        taken (bound here, not by uvicorn, which would exit the process)."""
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.listen.host, self.listen.port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="web")
        while not self._server.started:
            if self._task.done():
                self._task.result()   # what failed at startup
                raise OSError(f"the web server did not start on {self.listen}")
            await asyncio.sleep(0.01)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        task, self._task = self._task, None
        await task
