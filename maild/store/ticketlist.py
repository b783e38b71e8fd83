"""The desk's ticket list: filters (statuses, departments, priority, assignee, flag, tag, keywords), sorting
and pages, always within the departments a staff member may see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from maild.store.db import Database
from maild.store.tickets import SELECT, Ticket

# Sort keys → SQL; the id breaks ties, so that pages never repeat or skip a ticket.
SORTS = {
    "last_reply": "t.last_reply_at",
    "opened": "t.created_at",
    "tid": "t.tid",
    "subject": "lower(t.subject)",
    "status": "t.status",
    "priority": "CASE t.priority WHEN 'High' THEN 3 WHEN 'Medium' THEN 2 ELSE 1 END",
    "department": "d.name",
    "client": "lower(t.client_email)",
}


@dataclass(frozen=True)
class Query:
    scope: Sequence[int] | None = None      # the departments the viewer may see; None: all (an admin)
    statuses: Sequence[str] = ()            # empty: every status
    department_id: int | None = None
    priority: str = ""
    assigned_to: int | None = None
    unassigned: bool = False
    flagged_to: int | None = None
    tag: str = ""
    text: str = ""                          # keywords: every word in a message's subject or text
    sort: str = "last_reply"
    descending: bool = True
    offset: int = 0
    limit: int = 50


def _where(db: Database, q: Query) -> tuple[str, list[object]] | None:
    """The WHERE clause and its parameters; None when nothing can match."""
    where: list[str] = ["t.merged_into IS NULL"]
    params: list[object] = []
    if q.scope is not None:
        if not q.scope:
            return None
        where.append(f"t.department_id IN ({','.join('?' * len(q.scope))})")
        params += list(q.scope)
    if q.statuses:
        where.append(f"t.status IN ({','.join('?' * len(q.statuses))})")
        params += list(q.statuses)
    if q.department_id is not None:
        where.append("t.department_id = ?")
        params.append(q.department_id)
    if q.priority:
        where.append("t.priority = ?")
        params.append(q.priority)
    if q.unassigned:
        where.append("t.assigned_to IS NULL")
    elif q.assigned_to is not None:
        where.append("t.assigned_to = ?")
        params.append(q.assigned_to)
    if q.flagged_to is not None:
        where.append("t.flagged_to = ?")
        params.append(q.flagged_to)
    if q.tag:
        where.append("t.id IN (SELECT ticket_id FROM ticket_tags WHERE tag = ?)")
        params.append(q.tag)
    if q.text.strip():
        where.append("t.id IN (SELECT ticket_id FROM hits)")   # the WITH clause of page()
    return " AND ".join(where), params


COUNT_CAP = 1_000    # beyond this many matches the list says "1,000+": counting them all costs more than it tells
SEARCH_CAP = 5_000  # a keyword search looks at the latest this many matching messages (a word in every other
                     # mail would otherwise cost a scan of half the desk; such a search shows "1,000+" anyway)


@dataclass(frozen=True)
class Page:
    tickets: list[Ticket]
    total: int                  # how many match in all, at most COUNT_CAP + 1
    search_capped: bool = False  # the keywords matched more than SEARCH_CAP messages: only the latest count

    @property
    def capped(self) -> bool:
        return self.total > COUNT_CAP


async def page(db: Database, q: Query) -> Page:
    """One page of tickets and how many match in all (at most :data:`COUNT_CAP` + 1)."""
    found = _where(db, q)
    if found is None:
        return Page([], 0)
    where, params = found
    order = SORTS.get(q.sort, SORTS["last_reply"])
    direction = "DESC" if q.descending else "ASC"
    if q.text.strip():
        found_page = await _search(db, q, where, params, f"{order} {direction}, t.id {direction}", scoped=False)
        if found_page.search_capped and q.scope is not None and found_page.total < q.offset + q.limit:
            # The latest matches of the whole desk were mostly other departments': look again within the
            # viewer's (slower for a word this common, but only when the first look came up short).
            found_page = await _search(db, q, where, params, f"{order} {direction}, t.id {direction}", scoped=True)
        return found_page
    # The page's ids first, from the index where the filters and the order allow (no table row is read for
    # the tickets that do not make the page), then those tickets whole.
    join = " JOIN departments d ON d.id = t.department_id" if q.sort == "department" else ""
    ordered = f"ORDER BY {order} {direction}, t.id {direction}"
    picked = f"SELECT t.id FROM tickets t{join} WHERE {where} {ordered} LIMIT ? OFFSET ?"
    rows = await db.fetchall(f"{SELECT} WHERE t.id IN ({picked}) {ordered}", (*params, q.limit, q.offset))
    if q.offset == 0 and len(rows) < q.limit:
        return Page([Ticket.from_row(r) for r in rows], len(rows))
    total = await db.scalar(f"SELECT count(*) FROM (SELECT 1 FROM tickets t WHERE {where} LIMIT ?) capped",
                            (*params, COUNT_CAP + 1))
    return Page([Ticket.from_row(r) for r in rows], int(total or 0))


async def _search(db: Database, q: Query, where: str, params: list[object], ordered: str, scoped: bool) -> Page:
    """The tickets whose messages hold the keywords: the matching messages first, from the full-text index
    alone (materialised: PostgreSQL would otherwise walk the tickets in order and test each message's text
    itself), the latest SEARCH_CAP of them (of the whole desk, or ``scoped`` to the viewer's departments);
    then the tickets, counted in the same pass (a window), not twice."""
    if scoped:
        match = db.text_match(q.text, "id")
        assert match is not None and q.scope is not None
        ids, words = match
        hits = (f"matched (id) AS MATERIALIZED ({ids}), hits AS MATERIALIZED (SELECT m.ticket_id FROM messages m"
                " JOIN tickets s ON s.id = m.ticket_id WHERE m.id IN (SELECT id FROM matched) AND s.department_id IN"
                f" ({','.join('?' * len(q.scope))}) ORDER BY m.id DESC LIMIT ?)")
        words = [*words, *q.scope, SEARCH_CAP]
    else:
        match = db.text_match(q.text, "ticket_id", newest=SEARCH_CAP)
        assert match is not None
        found, words = match
        hits = f"hits AS MATERIALIZED ({found})"
    counted = "count(*) OVER () AS matched, (SELECT count(*) FROM hits) AS hit_count, t.*"
    rows = await db.fetchall(
        f"WITH {hits} {SELECT.replace('SELECT t.*', f'SELECT {counted}')} WHERE {where} ORDER BY {ordered}"
        " LIMIT ? OFFSET ?", (*words, *params, q.limit, q.offset))
    if rows:
        return Page([Ticket.from_row(r) for r in rows], min(int(rows[0]["matched"]), COUNT_CAP + 1),
                    int(rows[0]["hit_count"]) >= SEARCH_CAP)
    # None on this page: how many there are (past the last page), and whether the latest matches were cut.
    row = await db.fetchone(f"WITH {hits} SELECT (SELECT count(*) FROM hits) AS hit_count, (SELECT count(*) FROM"
                            f" (SELECT 1 FROM tickets t WHERE {where} LIMIT ?) c) AS matched",
                            (*words, *params, COUNT_CAP + 1))
    assert row is not None
    return Page([], int(row["matched"]), int(row["hit_count"]) >= SEARCH_CAP)


async def status_counts(db: Database, scope: Sequence[int] | None, statuses: Sequence[str]) -> dict[str, int]:
    """Tickets (not merged away) per status of ``statuses``, within ``scope`` (the list counts the statuses
    that need work, not the closed tickets that pile up for ever)."""
    if (scope is not None and not scope) or not statuses:
        return {}
    where = f"merged_into IS NULL AND status IN ({','.join('?' * len(statuses))})"
    params: list[object] = list(statuses)
    if scope is not None:
        where += f" AND department_id IN ({','.join('?' * len(scope))})"
        params += list(scope)
    rows = await db.fetchall(f"SELECT status, count(*) AS n FROM tickets WHERE {where} GROUP BY status", params)
    return {r["status"]: int(r["n"]) for r in rows}
