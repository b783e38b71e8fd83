"""Work that one node of several may do at a time (an IMAP mailbox's importer, the scheduler): a
:class:`LeaseKeeper` takes the named lease when it is free, renews it every third of its length, and says
when this node gained or lost it. A node that dies stops renewing; another takes the lease over once it has
run out. Time comes from the injected clock; the renewal rhythm is the event loop's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from maild.clock import Clock, iso
from maild.store import leases
from maild.store.db import Database

log = logging.getLogger("ticketd.nodes")


class LeaseKeeper:
    def __init__(self, db: Database, name: str, node: str, clock: Clock, seconds: float,
                 gained: Callable[[], Awaitable[None]], lost: Callable[[], Awaitable[None]]) -> None:
        self.db, self.name, self.node, self.clock, self.seconds = db, name, node, clock, seconds
        self.gained, self.lost = gained, lost
        self.held = False

    async def step(self) -> bool:
        """Take or renew the lease once; call ``gained``/``lost`` on a change. Whether it is held now."""
        now = self.clock.now()
        try:
            held = await leases.acquire(self.db, self.name, self.node, iso(now),
                                        iso(now + timedelta(seconds=self.seconds)))
        except Exception as exc:  # the database is away: keep what runs (the lease may still hold)
            log.warning("lease not renewed: %s", exc, extra={"kv": {"lease": self.name}})
            return self.held
        if held and not self.held:
            log.info("lease taken", extra={"kv": {"lease": self.name, "node": self.node}})
            self.held = True
            await self.gained()
        elif not held and self.held:
            log.warning("lease lost to another node", extra={"kv": {"lease": self.name, "node": self.node}})
            self.held = False
            await self.lost()
        return held

    async def run(self) -> None:
        """Keep the lease until cancelled (then :meth:`release` it)."""
        while True:
            await self.step()
            await asyncio.sleep(self.seconds / 3)

    async def release(self) -> None:
        """On a clean stop: ``lost`` (if held), then give the lease up so that another node need not wait."""
        if self.held:
            self.held = False
            await self.lost()
        try:
            await leases.release(self.db, self.name, self.node)
        except Exception as exc:
            log.warning("lease not released: %s", exc, extra={"kv": {"lease": self.name}})
