"""IMAP import: existing mailboxes read by UID into the spool, as safe as SMTP receipt.

imapclient is blocking, so each account runs in its own thread; every database step is handed to the
event loop (:class:`Bridge`), where the daemon's connections live. Per folder:

1. SELECT; a new UIDVALIDITY restarts the folder from UID 0 (deduplication catches what we had).
2. Finish the after-import actions of messages committed before a crash.
3. Find the UIDs above the last one committed (never by \\Seen: mail someone already read is imported).
4. Fetch sizes first; download in batches bounded in count and bytes (``BODY.PEEK[]``, which leaves
   \\Seen alone); a message over the size limit is fetched as its header only and ends ``too_large``.
5. Commit the batch, the pending actions and the new high UID in one transaction, then flag, move or
   delete on the server, then forget the pending actions.

Faults reconnect with capped exponential backoff; a refused login backs off long and says so in the
account's status instead of hammering the server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from maild.clock import Clock
from maild.config import ImapAccount
from maild.nodes import LeaseKeeper
from maild.store import imap as store
from maild.store.db import Database, node_name

log = logging.getLogger("ticketd.imap")

T = TypeVar("T")
SEEN = b"\\Seen"
SIZE_QUERY_CHUNK = 500
BATCH_BYTES = 32 * 1024 * 1024      # at most this much mail in memory per download
IDLE_MAX_SECONDS = 25 * 60          # RFC 2177: re-issue IDLE at least every 29 minutes
BACKOFF_MAX = 300.0
LOGIN_BACKOFF = (60.0, 1800.0)      # a refused login: first wait, longest wait


class FolderMissing(Exception):
    pass


class Bridge:
    """Runs coroutines on the daemon's event loop from an importer thread, and waits for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float = 120) -> None:
        self.loop = loop
        self.timeout = timeout

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout)


class Importer:
    """One account's import loop. ``run`` blocks: call it in a thread."""

    def __init__(
        self,
        account: ImapAccount,
        db: Database,
        bridge: Bridge,
        max_size: int,
        clock: Clock | None = None,
        on_spooled: Callable[[], None] | None = None,
    ) -> None:
        self.account = account
        self.db = db
        self.bridge = bridge
        self.max_size = max_size
        self.clock = clock or Clock()
        self.on_spooled = on_spooled or (lambda: None)
        self.stop = threading.Event()
        self.imported = 0
        self.skipped = 0               # messages the server would not hand out, in the current sync
        self._last_error = ""

    # -- status ---------------------------------------------------------------------------------------

    def _status(self, **fields: object) -> None:
        self.bridge(store.set_status(self.db, self.account.name, self.clock.stamp(), **fields))

    def _failed(self, state: str, message: str, delay: float) -> None:
        stamp = self.clock.stamp()
        next_try = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + delay))
        if message != self._last_error:  # say it once, not once per retry
            log.error("imap %s", state, extra={"kv": {"account": self.account.name, "error": message,
                                                      "retry_in": f"{delay:.0f}s"}})
        self._last_error = message
        self.bridge(store.set_status(self.db, self.account.name, stamp, state=state, connected=0,
                                     last_error=message, last_error_at=stamp, next_try_at=next_try))

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self, once: bool = False) -> None:
        """Import until ``stop`` is set (or, with ``once``, until what is there now is imported)."""
        backoff = 1.0
        login_backoff = LOGIN_BACKOFF[0]
        self._status(state="starting")
        while not self.stop.is_set():
            client = None
            try:
                client = self.connect()
                self._status(state="connected", connected=1, next_try_at=None,
                             capabilities=" ".join(c.decode() for c in client.capabilities()))
                while not self.stop.is_set():
                    self.skipped = 0
                    self.sync(client)
                    backoff, login_backoff = 1.0, LOGIN_BACKOFF[0]
                    if self._last_error:
                        log.info("imap recovered", extra={"kv": {"account": self.account.name}})
                        self._last_error = ""
                    # A message skipped in this sync keeps its error in the status; otherwise it is cleared.
                    cleared = {} if self.skipped else {"last_error": None}
                    if once:
                        self._status(state="synced", connected=0, last_sync=self.clock.stamp(), **cleared)
                        return
                    self._status(state="connected", last_sync=self.clock.stamp(), **cleared)
                    self.wait_for_mail(client)
            except LoginError as exc:
                if once:
                    raise
                self._failed("login_failed", f"login refused for {self.account.username}: {_text(exc)}",
                             login_backoff)
                self.stop.wait(login_backoff)
                login_backoff = min(login_backoff * 2, LOGIN_BACKOFF[1])
            except FolderMissing as exc:
                if once:
                    raise
                self._failed("error", str(exc), BACKOFF_MAX)
                self.stop.wait(BACKOFF_MAX)
            except (IMAPClientError, OSError, EOFError) as exc:  # OSError covers ssl and timeouts
                if once:
                    raise
                delay = backoff * random.uniform(0.8, 1.2)
                self._failed("backoff", f"{type(exc).__name__}: {_text(exc)}", delay)
                self.stop.wait(delay)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                if client is not None:
                    _close(client)
        self._status(state="stopped", connected=0)

    def connect(self) -> IMAPClient:
        return connect(self.account)

    def sync(self, client: IMAPClient) -> int:
        """Import every folder once; return how many messages were spooled."""
        return sum(self.sync_folder(client, folder) for folder in self.account.folders)

    def sync_folder(self, client: IMAPClient, folder: str) -> int:
        """Import the folder's new messages; again while the server announced more during the pass (an
        ``EXISTS`` in the answer to our FETCH, STORE or MOVE), so that such a message does not wait for the
        next ``poll_seconds`` re-sync: IDLE will not announce it a second time."""
        spooled = 0
        for _ in range(MAX_PASSES):
            spooled += self._sync_folder_once(client, folder)
            if not _announced_new_mail(client):
                break
        return spooled

    def _sync_folder_once(self, client: IMAPClient, folder: str) -> int:
        a = self.account
        try:
            info = client.select_folder(folder)
        except IMAPClientAbortError:
            raise  # the connection broke: reconnect, the folder is not to blame
        except IMAPClientError as exc:
            if client.folder_exists(folder):
                raise
            raise FolderMissing(f"folder {folder!r} does not exist in {a.name} ({a.username}@{a.host}):"
                                f" {_text(exc)}") from exc
        uidvalidity = int(info[b"UIDVALIDITY"])
        _announced_new_mail(client)  # SELECT's own count is no news
        state = self.bridge(store.folder_state(self.db, a.name, folder))
        if state is None or state[0] != uidvalidity:
            if state is not None:
                log.warning("imap uidvalidity changed; rescanning the folder", extra={"kv": {
                    "account": a.name, "folder": folder, "old": state[0], "new": uidvalidity}})
            self.bridge(store.reset_folder(self.db, a.name, folder, uidvalidity, self.clock.stamp()))
            last_uid = 0
        else:
            last_uid = state[1]
        leftover = self.bridge(store.pending(self.db, a.name, folder, uidvalidity))
        if leftover:
            self._after_import(client, folder, uidvalidity, leftover)
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        if not uids:
            return 0
        if len(uids) > 100:
            log.info("imap import starting", extra={"kv": {"account": a.name, "folder": folder,
                                                            "messages": len(uids)}})
        spooled = 0
        started = time.monotonic()
        for batch in self._batches(client, uids):
            items = self._download(client, batch)
            # A too-large message is only its header here: never delete it from the server.
            keep = {it.uid for it in items if it.size > self.max_size} if a.after_import == "delete" else set()
            act = [it.uid for it in items if it.uid not in keep]
            ids = self.bridge(store.commit_batch(self.db, a.name, folder, uidvalidity, a.department, items,
                                                 max(u for u, _ in batch), self.clock.stamp(), act))
            self.on_spooled()
            if keep:
                client.add_flags(sorted(keep), [SEEN], silent=True)
            self._after_import(client, folder, uidvalidity, act)
            spooled += len(ids)
            self.imported += len(ids)
            if len(uids) > 100:
                rate = spooled / max(time.monotonic() - started, 1e-6)
                log.info("imap import progress", extra={"kv": {"account": a.name, "folder": folder,
                                                               "done": spooled, "of": len(uids),
                                                               "per_second": f"{rate:.0f}"}})
        return spooled

    def _batches(self, client: IMAPClient, uids: list[int]) -> Iterator[list[tuple[int, int]]]:
        """(uid, size) groups bounded by the account's batch size and by BATCH_BYTES."""
        for i in range(0, len(uids), SIZE_QUERY_CHUNK):
            chunk = uids[i:i + SIZE_QUERY_CHUNK]
            sizes = client.fetch(chunk, ["RFC822.SIZE"])
            group: list[tuple[int, int]] = []
            total = 0
            for uid in chunk:
                if uid not in sizes:
                    continue  # expunged meanwhile
                size = int(sizes[uid].get(b"RFC822.SIZE", 0))
                counted = min(size, self.max_size)
                if group and (len(group) >= self.account.batch or total + counted > BATCH_BYTES):
                    yield group
                    group, total = [], 0
                group.append((uid, size))
                total += counted
            if group:
                yield group

    def _download(self, client: IMAPClient, batch: list[tuple[int, int]]) -> list[store.Fetched]:
        """The batch's messages; a message over the limit as its header only. A message the server will
        not hand out is logged and skipped, so it cannot hold up the rest of the folder."""
        try:
            return self._fetch(client, batch)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            if len(batch) == 1:
                uid = batch[0][0]
                message = f"server refused to send message UID {uid}: {_text(exc)}; skipped"
                log.error("imap fetch failed", extra={"kv": {"account": self.account.name, "uid": uid,
                                                             "error": _text(exc)}})
                self._status(last_error=message, last_error_at=self.clock.stamp())
                self.skipped += 1
                return []
        return [it for one in batch for it in self._download(client, [one])]

    def _fetch(self, client: IMAPClient, batch: list[tuple[int, int]]) -> list[store.Fetched]:
        small = [uid for uid, size in batch if size <= self.max_size]
        large = [uid for uid, size in batch if size > self.max_size]
        got: dict[int, bytes] = {}
        if small:
            for uid, data in client.fetch(small, ["BODY.PEEK[]"]).items():
                if b"BODY[]" in data:
                    got[uid] = bytes(data[b"BODY[]"] or b"")
        if large:  # header only: enough for the import log to say whose mail was too large
            for uid, data in client.fetch(large, ["BODY.PEEK[HEADER]"]).items():
                if b"BODY[HEADER]" in data:
                    got[uid] = bytes(data[b"BODY[HEADER]"] or b"")
        sizes = dict(batch)
        missing = [uid for uid in sizes if uid not in got]
        if missing and len(batch) == 1:
            raise IMAPClientError(f"no message body in the FETCH response for UID {missing[0]}")
        if missing:  # find out one by one which ones the server does not hand out
            raise IMAPClientError(f"FETCH response without a body for UIDs {missing[:5]}")
        items = []
        for uid, _ in batch:
            raw, size = got[uid], max(sizes[uid], len(got[uid]))  # a server may not report sizes
            if size > self.max_size and len(raw) > self.max_size:
                raw = raw[:_header_end(raw)]
            items.append(store.Fetched(uid, raw, size))
        return items

    def _after_import(self, client: IMAPClient, folder: str, uidvalidity: int, uids: Sequence[int]) -> None:
        if not uids:
            return
        a = self.account
        if a.after_import == "seen":
            client.add_flags(uids, [SEEN], silent=True)
        elif a.move_to is not None:
            if client.has_capability("MOVE"):
                try:
                    client.move(uids, a.move_to)
                except IMAPClientError:
                    if client.folder_exists(a.move_to):
                        raise
                    log.info("imap creating folder", extra={"kv": {"account": a.name, "folder": a.move_to}})
                    client.create_folder(a.move_to)
                    client.move(uids, a.move_to)
            else:
                try:
                    client.copy(uids, a.move_to)
                except IMAPClientError:  # as for MOVE: look for the folder only when the copy failed
                    if client.folder_exists(a.move_to):
                        raise
                    log.info("imap creating folder", extra={"kv": {"account": a.name, "folder": a.move_to}})
                    client.create_folder(a.move_to)
                    client.copy(uids, a.move_to)
                self._delete(client, uids)
        else:
            self._delete(client, uids)
        self.bridge(store.actions_done(self.db, a.name, folder, uidvalidity, uids))

    @staticmethod
    def _delete(client: IMAPClient, uids: Sequence[int]) -> None:
        client.delete_messages(uids, silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()

    def wait_for_mail(self, client: IMAPClient) -> None:
        """Until new mail may be there: IDLE where offered, else poll every ``poll_seconds``."""
        a = self.account
        if not (a.idle and client.has_capability("IDLE")):
            self.stop.wait(a.poll_seconds)
            return
        # IDLE watches the selected folder; other folders, and anything IDLE missed, are caught by the
        # re-sync every poll_seconds (the safety net).
        deadline = time.monotonic() + min(a.poll_seconds, IDLE_MAX_SECONDS)
        self._status(state="idle")
        client.idle()
        try:
            # Mail that came after our last command is announced right behind IDLE's "+ idling", often in
            # the same packet: imaplib has already read it into its buffer, where idle_check (which polls
            # the socket) would not look until the server's next packet.
            if _NEW_MAIL.search(_buffered(client)):
                return
            while not self.stop.is_set() and time.monotonic() < deadline:
                responses = client.idle_check(timeout=1)
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    return
                if any(r and r[0] == b"BYE" for r in responses):
                    raise EOFError("server said BYE")
        finally:
            try:
                client.idle_done()
            except (IMAPClientError, OSError):
                pass


MAX_PASSES = 10                     # a folder is synced again at most this often in a row (then IDLE)
_NEW_MAIL = re.compile(rb"^\* \d+ (?:EXISTS|RECENT)\r?$", re.MULTILINE)


def _announced_new_mail(client: IMAPClient) -> bool:
    """Whether the server announced messages (``* N EXISTS``) since the last call; forgets them. imaplib
    collects such untagged responses for us, whatever command they came with."""
    return bool(client._imap.untagged_responses.pop("EXISTS", None))


def _buffered(client: IMAPClient) -> bytes:
    """What imaplib has read from the server and nobody has looked at yet (without waiting for more)."""
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bytes(client._imap.file.peek(1 << 16))  # never blocks: at most one non-blocking read
    except OSError:
        return b""
    finally:
        sock.settimeout(timeout)


def _header_end(raw: bytes) -> int:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return i + len(sep)
    return min(len(raw), 64 * 1024)


def connect(a: ImapAccount) -> IMAPClient:
    """A logged-in client for the account (TLS, STARTTLS or, on loopback only, plain)."""
    context = ssl.create_default_context()
    client = IMAPClient(a.host, port=a.port, ssl=(a.security == "tls"), ssl_context=context, timeout=a.timeout)
    try:
        if a.security == "starttls":
            client.starttls(context)
        client.login(a.username, a.secret())
    except BaseException:
        _close(client)
        raise
    return client


def _text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text or type(exc).__name__


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            pass


class ImapService:
    """All accounts' importers, each in its own thread with its own database connection (transactions
    of one connection cannot interleave), for ``serve`` and ``imap sync``.

    With ``lease_seconds`` (``serve``), each mailbox is imported by one node at a time: a node runs an
    account's importer only while it holds the lease ``imap:ACCOUNT`` (renewed every third of that time), and
    takes over the accounts of a node that died once their leases have run out."""

    def __init__(self, accounts: Sequence[ImapAccount], connect: Callable[[], Awaitable[Database]], max_size: int,
                 clock: Clock, on_spooled: Callable[[], None], lease_seconds: float | None = None,
                 node: str = "") -> None:
        self.accounts = accounts
        self.connect = connect   # a new connection to the database (sharing the daemon's write gate)
        self.max_size = max_size
        self.clock = clock
        self.on_spooled = on_spooled
        self.lease_seconds = lease_seconds
        self.node = node_name(node)
        self.running: dict[str, tuple[Importer, threading.Thread, Database]] = {}
        self.keepers: list[LeaseKeeper] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._lease_db: Database | None = None

    @property
    def importers(self) -> list[Importer]:
        return [importer for importer, _, _ in self.running.values()]

    async def start(self) -> None:
        if self.lease_seconds is None:
            for account in self.accounts:
                await self._start(account)
            return
        self._lease_db = await self.connect()
        for account in self.accounts:
            keeper = LeaseKeeper(self._lease_db, f"imap:{account.name}", self.node, self.clock, self.lease_seconds,
                                 gained=partial(self._start, account), lost=partial(self._stop_one, account.name))
            self.keepers.append(keeper)
            self.tasks.append(asyncio.create_task(keeper.run(), name=f"imap-lease-{account.name}"))

    async def _start(self, account: ImapAccount) -> None:
        loop = asyncio.get_running_loop()
        notify = self.on_spooled

        def on_spooled() -> None:
            loop.call_soon_threadsafe(notify)

        db = await self.connect()
        importer = Importer(account, db, Bridge(loop), self.max_size, self.clock, on_spooled)
        thread = threading.Thread(target=self._run, args=(importer,), name=f"imap-{account.name}", daemon=True)
        self.running[account.name] = (importer, thread, db)
        thread.start()

    async def _stop_one(self, name: str, timeout: float = 30) -> None:
        if name not in self.running:
            return
        importer, thread, db = self.running.pop(name)
        importer.stop.set()
        await asyncio.to_thread(thread.join, timeout)
        if not thread.is_alive():
            await db.close()

    @staticmethod
    def _run(importer: Importer) -> None:
        while not importer.stop.is_set():
            try:
                importer.run()
            except Exception:  # a bug must not go unseen, nor stop the other accounts
                log.exception("imap importer crashed; restarting it in 30 s",
                              extra={"kv": {"account": importer.account.name}})
                importer.stop.wait(30)

    async def stop(self, timeout: float = 30) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for importer, _, _ in self.running.values():
            importer.stop.set()   # all at once; then each is waited for
        for keeper in self.keepers:
            await keeper.release()
        for name in list(self.running):
            await self._stop_one(name, timeout)
        self.keepers, self.tasks = [], []
        if self._lease_db is not None:
            await self._lease_db.close()
            self._lease_db = None
