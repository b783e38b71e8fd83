"""Composition root: config → database → spool → receivers → worker. No globals; each part gets what
it needs from here."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jinja2

from maild.addressbook import AddressBook
from maild.clock import Clock
from maild.config import ConfigError, Listen, Settings
from maild.desk.desk import Desk
from maild.keys import load_or_create_secret
from maild.notify.follow import Notifier
from maild.notify.render import Renderer, TemplateMissing
from maild.notify.tokens import Signer
from maild.pipeline.context import Env
from maild.pipeline.prepare import Preparer
from maild.pipeline.worker import Worker, wait_any
from maild.spoolwriter import SpoolWriter
from maild.store import departments
from maild.store.blobs import BlobSpec
from maild.store.db import Database, node_name, open_database

if TYPE_CHECKING:
    from maild.notify.send import OutboxSender
    from maild.receive.imap import ImapService
    from maild.web.server import WebServer

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
    inline_db: bool = False        # queries on the loop's thread (the worker's own process: store/db.py)
    departments: dict[str, int] = field(default_factory=dict)
    signer: Signer = field(init=False)
    notifier: Notifier = field(init=False)
    desk: Desk = field(init=False)

    async def open(self) -> App:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        # Templates and the secret first: a broken override or an unreadable secret stops here, before the
        # database (whose thread would keep a failing process alive) is open.
        self.signer = self._signer()
        renderer = self._renderer()
        self.db = await open_database(self.settings.database_url, inline=self.inline_db)
        try:
            await self._build(renderer)
        except BaseException:
            await self.close()   # the database's thread must not outlive a failed start
            raise
        return self

    async def _build(self, renderer: Renderer) -> None:
        assert self.db is not None
        names = [d.name for d in self.settings.departments]
        dept_ids = await departments.sync(self.db, names, self.clock.stamp())
        self.departments = dept_ids
        self.notifier = Notifier(self.db, self.settings, self.clock, self.signer, renderer,
                                 BlobSpec.from_settings(self.settings).open(), AddressBook(self.settings))
        self.desk = Desk(self.db, self.settings, self.clock, dept_ids, self.notifier)
        self.env = Env(
            db=self.db,
            settings=self.settings,
            clock=self.clock,
            departments=dept_ids,
            desk=self.desk,
            notifier=self.notifier,
            signer=self.signer,
        )
        self.worker = Worker(self.env, preparer=Preparer(
            self.parsers, BlobSpec.from_settings(self.settings), self.settings.attachments.policy))

    def _signer(self) -> Signer:
        """The installation secret signs reply tokens, bounce addresses and client links."""
        try:
            return Signer(load_or_create_secret(self.settings.secret_path))
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot read or create the secret {self.settings.secret_path}: {exc}") from None

    def _renderer(self) -> Renderer:
        """The mail templates; a broken override directory fails here, at start, naming the template. The
        built-in ones are checked by the test suite, not at every start (compiling them all costs ~50 ms,
        a third of a short command such as ``ticket list``)."""
        renderer = Renderer(self.settings.notifications.templates)
        if self.settings.notifications.templates is None:
            return renderer
        from maild.notify.rules import rules, templates

        try:
            renderer.check([*templates(rules(self.settings.notifications.rules)), ("staff", "command_error")])
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(self.settings.source, "notifications.templates",
                              f"{exc.filename or exc.name}, line {exc.lineno}: {exc.message}") from None
        except (TemplateMissing, jinja2.TemplateError) as exc:
            raise ConfigError(self.settings.source, "notifications.templates", str(exc)) from None
        return renderer

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


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets: the long-running commands stop cleanly on either."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def raise_fd_limit() -> None:
    """Every session is a file descriptor: take the hard limit (systemd's LimitNOFILE), not the soft 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit", extra={"kv": {"soft": soft, "hard": hard,
                                                                                "error": str(exc)}})
            return
        soft = target
    log.info("file descriptors", extra={"kv": {"limit": soft}})


async def serve(settings: Settings, smtp: Listen | None, lmtp: Listen | None) -> int:
    """Run the daemon until SIGTERM/SIGINT: stop accepting, finish the message in hand, exit 0."""
    from maild.addressbook import AddressBook
    from maild.notify.send import OutboxSender
    from maild.receive.smtp import SpoolHandler, guard_accept_errors, start_server

    stop = stop_on_signals()
    raise_fd_limit()
    guard_accept_errors(asyncio.get_running_loop())
    async with App(settings, parsers=settings.worker.parsers) as app:
        assert app.worker is not None and app.db is not None
        # Receivers commit on their own connection; both take turns at the write lock through one gate.
        spool_db = await app.db.another()
        spool = SpoolWriter(spool_db, app.clock)
        spool.on_commit(app.worker.wake)
        spool.start()
        book = AddressBook(settings)
        servers: list[tuple[str, asyncio.Server, SpoolHandler]] = []
        imap: ImapService | None = None
        sender: OutboxSender | None = None
        outbox_db: Database | None = None
        sender_task: asyncio.Task[None] | None = None
        worker_task: asyncio.Task[None] | None = None
        from maild.jobs.scheduler import Scheduler

        scheduler = Scheduler(app, node_name(settings.database.node))
        web: WebServer | None = None
        try:
            if settings.web.listen is not None:
                from maild.web.app import build
                from maild.web.server import WebServer

                def worker_alive() -> bool:
                    return worker_task is not None and not worker_task.done()

                web = WebServer(build(app, worker_alive=worker_alive), settings.web.listen)
                try:
                    port = await web.start()
                except OSError as exc:
                    web = None
                    raise StartupError(f"cannot listen for the web view on {settings.web.listen}"
                                       f" ({exc.strerror or exc}); change 'web.listen' in {settings.source} or pass"
                                       " --web") from None
                log.info("listening", extra={"kv": {"protocol": "http",
                                                    "address": f"{settings.web.listen.host}:{port}"}})
            for name, listen in (("smtp", smtp), ("lmtp", lmtp)):
                if listen is None:
                    continue
                handler = SpoolHandler(spool, book, name, settings.smtp if name == "smtp" else settings.lmtp)
                try:
                    server = await start_server(handler, listen.host, listen.port, settings.mail.domain,
                                                settings.mail.max_message_size, lmtp=(name == "lmtp"))
                except OSError as exc:
                    raise StartupError(f"cannot listen for {name.upper()} on {listen} ({exc.strerror or exc});"
                                       f" change '{name}.listen' in {settings.source} or pass --{name}") from None
                port = server.sockets[0].getsockname()[1]
                log.info("listening", extra={"kv": {"protocol": name, "address": f"{listen.host}:{port}"}})
                servers.append((name, server, handler))
            if settings.worker.process:
                worker_task = asyncio.create_task(supervise("worker", settings, stop), name="pipeline-process")
            else:
                worker_task = asyncio.create_task(app.worker.run(stop), name="pipeline-worker")
            if settings.imap:
                from maild.receive.imap import ImapService

                imap = ImapService(settings.imap, app.db.another, settings.mail.max_message_size,
                                   app.clock, app.worker.wake, lease_seconds=settings.database.lease_seconds,
                                   node=settings.database.node)
                await imap.start()
                log.info("imap started", extra={"kv": {"accounts": ",".join(a.name for a in settings.imap)}})
            if settings.worker.process:
                sender_task = asyncio.create_task(supervise("sender", settings, stop), name="sender-process")
            else:
                # The outbox sender: its own connection (it must never read another writer's open transaction).
                outbox_db = await app.db.another()
                sender = OutboxSender(outbox_db, settings, app.clock, app.signer)  # app.signer: the secret's
                sender.start()
                wake_sender = sender.wake   # mail queued by the in-process worker goes out without a poll
                app.worker.listeners.append(lambda _result: wake_sender())
            scheduler.start()   # its jobs run while this node holds the scheduler lease
            log.info("started", extra={"kv": {"config": settings.source, "state_dir": settings.state_dir,
                                              "departments": len(settings.departments)}})
            await stop.wait()
            log.info("stopping: no new connections; finishing the messages in hand")
            if web is not None:
                await web.stop()
            await scheduler.stop()   # a job run in hand ends first
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
            if sender is not None:
                await sender.stop()   # the mails in flight are finished and recorded first
            await asyncio.gather(*(t for t in (worker_task, sender_task) if t is not None))
        finally:
            if web is not None:
                await web.stop()
            await scheduler.stop()
            await spool.close()
            await spool_db.close()
            if sender is not None:
                await sender.stop()
            if outbox_db is not None:
                await outbox_db.close()
            if imap is not None:
                await imap.stop()
    log.info("stopped")
    return 0


# -- the pipeline worker and the outbox sender in processes of their own ------------------------------------
# With two or more cores, receiving (the SMTP/LMTP protocol, group commits), processing (parsing, the
# database round trips of the stages) and sending (SMTP to the relay) each get a core instead of sharing one
# event loop and one GIL. They meet only in the database, as `ticketd pipe` and the daemon always have.
# Both children are niced: answering SMTP clients comes first. Under a burst the pipeline may lag (the mail
# is safe in the spool) and the outbox fills (it is durable), but the senders must not time out.

CHILD_POLL_SECONDS = 0.02
CHILD_MAX_TX_SECONDS = 0.02
SENDER_POLL_SECONDS = 0.2         # mail queued by the worker process is found this fast
CHILD_NICENESS = 10


def child_main(kind: str, settings: Settings, parent: int) -> None:
    """Entry point of a child process (``worker`` or ``sender``): run until SIGTERM/SIGINT or the parent's
    death."""
    from maild import logs

    logs.setup(settings.log.level)
    os.nice(CHILD_NICENESS)   # parser processes inherit it
    asyncio.run(_child(kind, settings, parent))


async def _child(kind: str, settings: Settings, parent: int) -> None:
    stop = stop_on_signals()
    threading.Thread(target=_watch_parent, args=(kind, parent, asyncio.get_running_loop(), stop),
                     name="parent-watch", daemon=True).start()
    await (_worker_process if kind == "worker" else _sender_process)(settings, stop)


ORPHAN_POLL_SECONDS = 0.2
ORPHAN_GRACE_SECONDS = 2.0


def _watch_parent(kind: str, parent: int, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """A thread, so that it works while the loop is busy: once the daemon is gone (even by SIGKILL), ask
    the child to stop, and if it has not exited ORPHAN_GRACE_SECONDS later (a batch in the parsers' hands,
    the executor joined at exit), kill its parser processes and exit. Nothing is lost by that: what was
    not committed stays in the spool (or the outbox) for the next daemon."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL_SECONDS)
    log.warning("%s process: the daemon is gone; stopping", kind)
    try:
        loop.call_soon_threadsafe(stop.set)
    except RuntimeError:  # the loop is already closed: the process is on its way out
        pass
    time.sleep(ORPHAN_GRACE_SECONDS)
    import multiprocessing

    log.warning("%s process: still here %.0f s after the daemon died; killing its parser processes and"
                " exiting", kind, ORPHAN_GRACE_SECONDS)
    for child in multiprocessing.active_children():
        child.kill()
    os._exit(70)


async def _worker_process(settings: Settings, stop: asyncio.Event) -> None:
    # Its queries run on the loop's thread (store/db.py): this loop has nothing else to answer.
    async with App(settings, parsers=settings.worker.parsers, inline_db=True) as app:
        assert app.worker is not None and app.db is not None
        app.worker.poll_seconds = CHILD_POLL_SECONDS
        if app.db.one_writer:
            # The receivers are in another process, where we cannot see them wait: hand the one write lock
            # over often. (Where writers do not wait for each other, PostgreSQL's, no reason to cut short.)
            app.worker.max_tx_seconds = CHILD_MAX_TX_SECONDS
        await app.worker.run(stop)


async def _sender_process(settings: Settings, stop: asyncio.Event) -> None:
    from maild.notify.send import OutboxSender

    signer = Signer(load_or_create_secret(settings.secret_path))
    db = await open_database(settings.database_url, inline=True)
    try:
        sender = OutboxSender(db, settings, Clock(), signer, poll_seconds=SENDER_POLL_SECONDS)
        sender.start()
        await stop.wait()
        await sender.stop()   # the mails in flight are finished and recorded first
    finally:
        await db.close()


class RestartBackoff:
    """How long to wait before restarting a child process that died: 1 s, then doubling with each death in
    a row up to 30 s; a child that ran ``healthy`` seconds before it died starts the series again (one
    crash a day must not cost 30 s for the rest of the daemon's life)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, healthy: float = 60.0,
                 first: float = 1.0, longest: float = 30.0) -> None:
        self.clock, self.healthy, self.first, self.longest = clock, healthy, first, longest
        self.failures = 0
        self._started: float | None = None

    def started(self) -> None:
        self._started = self.clock()

    def died(self) -> float:
        """The delay before the next start."""
        if self._started is not None and self.clock() - self._started >= self.healthy:
            self.failures = 0
        self._started = None
        self.failures += 1
        return min(self.longest, self.first * 2 ** min(self.failures - 1, 16))


async def supervise(kind: str, settings: Settings, stop: asyncio.Event) -> None:
    """Run a child process; restart it if it dies; on ``stop``, SIGTERM it and wait for its work in hand."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork a process with threads (the database's)
    backoff = RestartBackoff()
    while not stop.is_set():
        # Not a daemonic process: the worker runs a parser pool of its own. It exits by itself if we die.
        proc = ctx.Process(target=child_main, args=(kind, settings, os.getpid()), name=f"ticketd-{kind}")
        try:
            proc.start()
        except OSError as exc:  # out of processes or memory: keep receiving, try again
            delay = backoff.died()
            log.error("cannot start the %s process; retrying", kind, extra={"kv": {"error": str(exc),
                                                                                  "retry_in": f"{delay:.1f}s"}})
            await wait_any(delay, stop)
            continue
        backoff.started()
        log.info("%s process started", kind, extra={"kv": {"pid": proc.pid}})
        while proc.is_alive() and not stop.is_set():
            await wait_any(0.5, stop)
        if stop.is_set():
            proc.terminate()
            await asyncio.to_thread(proc.join, 60)
            if proc.is_alive():
                log.error("%s process did not stop in 60 s; killing it (its work in hand rolls back)", kind)
                proc.kill()
                await asyncio.to_thread(proc.join, 5)
            return
        delay = backoff.died()
        log.error("%s process died; restarting it", kind, extra={"kv": {"exitcode": proc.exitcode,
                                                                    "retry_in": f"{delay:.1f}s"}})
        await wait_any(delay, stop)
