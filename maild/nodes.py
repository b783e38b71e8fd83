"""Work that one node of several may do at a time (an IMAP mailbox's importer, the scheduler): a
:class:`LeaseKeeper` takes the named lease when it is free, renews it every third of its length, and says
when this node gained or lost it. A node that dies stops renewing; another takes the lease over once it has
run out. Time comes from the injected clock; the renewal rhythm is the event loop's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

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
        self.held_until: datetime | None = None

    async def step(self) -> bool:
        """Take or renew the lease once; call ``gained``/``lost`` on a change. Whether it is held now."""
        now = self.clock.now()
        until = now + timedelta(seconds=self.seconds)
        try:
            held = await leases.acquire(self.db, self.name, self.node, iso(now), iso(until))
        except Exception as exc:
            # The database is away: what runs goes on while the lease surely holds, and stops once it may
            # have run out (another node can take it then: never two at once).
            log.warning("lease not renewed: %s", exc, extra={"kv": {"lease": self.name}})
            held = self.held and self.held_until is not None and now < self.held_until
        else:
            if held:
                self.held_until = until
        if held and not self.held:
            log.info("lease taken", extra={"kv": {"lease": self.name, "node": self.node}})
            self.held = True
            await self.gained()
        elif not held and self.held:
            log.warning("lease lost", extra={"kv": {"lease": self.name, "node": self.node}})
            self.held = False
            await self.lost()
        return held

    async def run(self) -> None:
        """Keep the lease until cancelled (then :meth:`release` it). Trouble starting or stopping the work
        is logged and tried again at the next renewal, never the end of the keeping."""
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease work failed to start or stop", extra={"kv": {"lease": self.name}})
                self.held = False   # taken again (and started again) at the next step
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
