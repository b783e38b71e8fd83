"""Composition root: config → database → spool → receivers → worker. No globals; each part gets what
it needs from here."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from maild.clock import Clock
from maild.config import Listen, Settings
from maild.pipeline.context import Env
from maild.pipeline.prepare import Preparer
from maild.pipeline.worker import Worker
from maild.spoolwriter import SpoolWriter
from maild.store import departments
from maild.store.db import Database
from maild.store.files import FileStore

if TYPE_CHECKING:
    from maild.receive.imap import ImapService

log = logging.getLogger("ticketd")


class StartupError(Exception):
    """The daemon cannot start for a reason the admin must fix (a port in use, ...)."""


@dataclass
class App:
    settings: Settings
    clock: Clock = field(default_factory=Clock)
    db: Database | None = None
    env: Env | None = None
    worker: Worker | None = None
    parsers: int = 0               # parser processes; 0 parses in a thread (short-lived commands)

    async def open(self) -> App:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = await Database.open(self.settings.db_path)
        names = [d.name for d in self.settings.departments]
        dept_ids = await departments.sync(self.db, names, self.clock.stamp())
        self.env = Env(
            db=self.db,
            settings=self.settings,
            clock=self.clock,
            files=FileStore(self.settings.attachments_dir),
            departments=dept_ids,
        )
        self.worker = Worker(self.env, preparer=Preparer(self.parsers, self.settings.attachments_dir))
        return self

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def __aenter__(self) -> App:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(settings: Settings, smtp: Listen | None, lmtp: Listen | None) -> int:
    """Run the daemon until SIGTERM/SIGINT: stop accepting, finish the message in hand, exit 0."""
    from maild.addressbook import AddressBook
    from maild.receive.smtp import SpoolHandler, start_server

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with App(settings, parsers=settings.worker_parsers) as app:
        assert app.worker is not None and app.db is not None
        # Receivers commit on their own connection; both take turns at the write lock through one gate.
        spool_db = await Database.open(settings.db_path, gate=app.db.gate)
        spool = SpoolWriter(spool_db, app.clock)
        spool.on_commit(app.worker.wake)
        spool.start()
        book = AddressBook(settings)
        servers: list[tuple[str, asyncio.AbstractServer, SpoolHandler]] = []
        imap: ImapService | None = None
        imap_db: Database | None = None
        try:
            for name, listen in (("smtp", smtp), ("lmtp", lmtp)):
                if listen is None:
                    continue
                handler = SpoolHandler(spool, book, name)
                try:
                    server = await start_server(handler, listen.host, listen.port, settings.domain,
                                                settings.max_message_size, lmtp=(name == "lmtp"))
                except OSError as exc:
                    raise StartupError(f"cannot listen for {name.upper()} on {listen} ({exc.strerror or exc});"
                                       f" change '{name}.listen' in {settings.source} or pass --{name}") from None
                port = server.sockets[0].getsockname()[1]
                log.info("listening", extra={"kv": {"protocol": name, "address": f"{listen.host}:{port}"}})
                servers.append((name, server, handler))
            worker_task = asyncio.create_task(app.worker.run(stop), name="pipeline-worker")
            if settings.imap:
                from maild.receive.imap import ImapService

                imap_db = await Database.open(settings.db_path, gate=app.db.gate)
                imap = ImapService(settings.imap, imap_db, settings.max_message_size, app.clock, app.worker.wake)
                imap.start()
                log.info("imap started", extra={"kv": {"accounts": ",".join(a.name for a in settings.imap)}})
            log.info("started", extra={"kv": {"config": settings.source, "state_dir": settings.state_dir,
                                              "departments": len(settings.departments)}})
            await stop.wait()
            log.info("stopping: no new connections; finishing the messages in hand")
            for _, server, _ in servers:
                server.close()
            if imap is not None:
                await imap.stop()
            for _, _, handler in servers:
                try:
                    await asyncio.wait_for(handler.idle.wait(), timeout=30)
                except TimeoutError:
                    log.warning("gave up waiting for a message in hand after 30 s; it was not acknowledged")
            await spool.close()
            await worker_task
        finally:
            await spool.close()
            await spool_db.close()
            if imap is not None:
                await imap.stop()
            if imap_db is not None:
                await imap_db.close()
    log.info("stopped")
    return 0
