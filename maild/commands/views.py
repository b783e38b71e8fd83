"""JSON shapes of import-log rows and tickets, shared by the CLI (and later the web view)."""

from __future__ import annotations

import json
from typing import Any

from maild.store import messages, people, ratings, staff, tickets
from maild.store.db import Database, Row
from maild.store.tickets import Ticket


def import_log_row(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "queue_id": row["inbound_id"],
        "received_at": row["received_at"],
        "processed_at": row["processed_at"],
        "source": row["source"],
        "source_ref": row["source_ref"],
        "envelope_from": row["envelope_from"],
        "envelope_to": json.loads(row["envelope_to"] or "[]"),
        "from": row["from_addr"],
        "from_name": row["from_name"],
        "subject": row["subject"],
        "message_id": row["message_id"],
        "size": row["size"],
        "department": row["department"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "ticket": row["tid"],
        "imported_by": row["imported_by"],
        "imported_at": row["imported_at"],
    }


def ticket_summary(row: Ticket, targets: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ticket's fields; ``targets``: its response targets (maild/jobs/targets.py), when known."""
    return {
        "tid": row.tid,
        "subject": row.subject,
        "status": row.status,
        "priority": row.priority,
        "department": row.department,
        "client_email": row.client_email,
        "client_name": row.client_name,
        "created_at": row.created_at,
        "last_reply_at": row.last_reply_at,
        "assigned": row.assigned_username,
        "flagged": row.flagged_username,
        "last_client_reply_at": row.last_client_reply_at or None,
        "last_staff_reply_at": row.last_staff_reply_at or None,
        "closed_at": row.closed_at or None,
        "related_service": row.related_service or None,
        **({"targets": targets} if targets is not None else {}),
    }


async def ticket_full(db: Database, row: Ticket, targets: dict[str, Any] | None = None) -> dict[str, Any]:
    data = ticket_summary(row, targets)
    files: dict[int, list[dict[str, Any]]] = {}
    for a in await messages.attachments_for_ticket(db, row.id):
        files.setdefault(a.message_id, []).append({
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "inline": a.inline,
            "content_id": a.content_id,
        })
    signatures: dict[int, list[dict[str, Any]]] = {}
    for s in await messages.signatures_for_ticket(db, row.id):
        signatures.setdefault(s["message_id"], []).append({
            "kind": s["kind"], "content_type": s["content_type"], "filename": s["filename"], "size": s["size"]})
    rated = await ratings.for_ticket(db, row.id)
    data["messages"] = [
        {
            "number": number,   # its place in the ticket, from 1 (``id`` is the database's, across tickets)
            "id": m.id,
            "kind": m.kind,
            "author_email": m.author_email,
            "author_name": m.author_name,
            "badge": m.badge,
            "subject": m.subject,
            "body": m.body,
            "body_full": m.body_full,
            "body_html": m.body_html,
            "message_id": m.message_id,
            "queue_id": m.inbound_id,
            "created_at": m.created_at,
            "attachments": files.get(m.id, []),
            "signatures": signatures.get(m.id, []),   # S/MIME or PGP signature parts (not checked)
            "rating": rated.get(m.id),   # the client's rating of a staff reply, 1-5
        }
        for number, m in enumerate(await messages.for_ticket(db, row.id), start=1)
    ]
    data["cc"] = [{"address": c["address"], "state": c["state"]} for c in await people.cc_list(db, row.id)]
    data["tags"] = (await tickets.tags_of(db, [row.id])).get(row.id, [])
    data["watchers"] = [w.username for w in await staff.watchers(db, row.id)]
    data["log"] = [
        {"at": e["at"], "actor": e["actor"], "event": e["event"], "detail": json.loads(e["detail"])}
        for e in await tickets.events(db, row.id)
    ]
    return data
