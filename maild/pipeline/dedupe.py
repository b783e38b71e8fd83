"""Dedupe: the same message again (same Message-ID and body) changes nothing.

Covers an MTA retry after a lost 250, the same mail delivered once per department address, an IMAP
re-fetch after a crash and re-ingesting a file.
"""

from __future__ import annotations

from maild.outcomes import Duplicate, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import importlog


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    """Claim the message's key; a key held by another queue id makes this message its duplicate."""
    earlier = await importlog.claim_key(env.db, ctx.mail.dedupe_key, ctx.inbound.id)
    if earlier is None:
        return None
    return Duplicate(
        ticket_id=earlier["ticket_id"],
        tid=earlier["tid"],
        detail=f"same as queue id {earlier['inbound_id']} ({earlier['outcome'] or 'being processed'})",
    )
