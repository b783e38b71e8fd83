"""The mail import log in the browser (``/import-log``, ``/import-log/ID``): every message's outcome,
filtered by outcome, reason, source, date and sender; an entry's parsed view and raw message; importing a
blocked reply into a ticket (as a reply or a note, or as a new ticket) and reprocessing a failed message —
the same calls as ``ticketd import-log import`` and ``ticketd reprocess``. Staff see the entries of their
departments; entries that reached no department are for admins."""

from __future__ import annotations

import email
import email.policy
import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from maild.commands.views import import_log_row
from maild.filters import FilterError, parse_instant, parse_outcome
from maild.outcomes import BLOCKED_REASONS, OUTCOME_NAMES
from maild.pipeline.manual import NEW_TICKET_REASONS, ImportRefused, import_blocked, reprocess
from maild.store import importlog, inbound, tickets
from maild.store.db import Row
from maild.web import mailview
from maild.web.auth import Section, Viewer
from maild.web.tickets import page_number

if TYPE_CHECKING:
    pass

log = logging.getLogger("ticketd.web")
PAGE_SIZE = 100
SOURCES = ("smtp", "lmtp", "pipe", "imap", "ingest")
MAX_SHOWN_BYTES = 2 * 1024 * 1024     # a raw message shown in the page beyond this is cut (the rest: download)


class ImportLog(Section):
    def _may_see(self, viewer: Viewer, row: Row) -> bool:
        """The entry's ticket's department now (it may have moved), or, without a ticket, where it was routed."""
        if viewer.scope is None:
            return True
        department = row["ticket_department_id"] if row["ticket_id"] is not None else row["department_id"]
        return department is not None and viewer.sees(department)

    async def listing(self, request: Request, viewer: Viewer) -> Response:
        p = request.query_params
        given = {k: p.get(k, "").strip() for k in ("outcome", "source", "since", "until", "sender")}
        problems: list[str] = []
        outcome = reason = since = until = None
        try:
            if given["outcome"]:
                outcome, reason = parse_outcome(given["outcome"], "outcome")
            if given["since"]:
                since = parse_instant(given["since"], "received since")
            if given["until"]:
                until = parse_instant(given["until"], "received before")
        except FilterError as exc:
            problems.append(str(exc))
        source = given["source"] if given["source"] in SOURCES else None
        number = page_number(p.get("page", "1"))
        rows = [] if problems else await importlog.listing(
            self.db, outcome, reason, since, PAGE_SIZE + 1, until=until, source=source,
            sender=given["sender"][:200] or None, scope=viewer.scope, offset=(number - 1) * PAGE_SIZE)
        return self.auth.page(
            "importlog.html", viewer=viewer, rows=[import_log_row(r) for r in rows[:PAGE_SIZE]],
            more=len(rows) > PAGE_SIZE, page_number=number, given=given, problems=problems,
            outcomes=[*OUTCOME_NAMES, *(f"blocked:{r}" for r in BLOCKED_REASONS)], sources=SOURCES)

    async def entry(self, request: Request, viewer: Viewer, status: int = 200, error: str = "",
                    done: str = "") -> Response:
        log_id = int(request.path_params["log_id"])
        row = await importlog.get(self.db, log_id)
        if row is None or not self._may_see(viewer, row):
            return self.auth.not_found(viewer, "This entry")
        found = await inbound.get(self.db, row["inbound_id"])
        raw = found[1] if found is not None else b""
        view = request.query_params.get("view", "parsed")
        if view == "raw" and request.query_params.get("download") == "1":
            return Response(raw, media_type="message/rfc822", headers={
                "content-disposition": f"attachment; filename=\"ticketd-{log_id}.eml\"", "cache-control": "no-store"})
        ticket = None
        if row["ticket_id"] is not None:
            ticket = await tickets.get(self.db, row["ticket_id"])
        return self.auth.page(
            "importlog_entry.html", status, viewer=viewer, e=import_log_row(row), detail=row["detail"], view=view,
            raw=raw[:MAX_SHOWN_BYTES].decode("utf-8", errors="replace"), raw_cut=len(raw) > MAX_SHOWN_BYTES,
            raw_size=len(raw), parsed=_parsed(raw) if raw and view != "raw" else None, error=error,
            done=done or request.query_params.get("done", ""), may_new=row["reason"] in NEW_TICKET_REASONS,
            ticket=ticket, departments=[n for n, i in self.app.departments.items() if viewer.sees(i)])

    async def import_(self, request: Request, viewer: Viewer) -> Response:
        log_id = int(request.path_params["log_id"])
        row = await importlog.get(self.db, log_id)
        if row is None or not self._may_see(viewer, row):
            return self.auth.not_found(viewer, "This entry")
        form = request.state.form
        kind = "note" if form.get("kind") == "note" else "reply"
        new = form.get("target") == "new"
        tid = str(form.get("ticket") or "").strip().lstrip("#") or None
        department = str(form.get("department") or "") or None
        force = form.get("force") == "1" and viewer.scope is None        # only an admin may force
        # The staff member must work in the ticket (or the new ticket's department) the mail goes to.
        target_dept = None
        if new:
            name = department or row["department"]
            target_dept = next((i for n, i in self.app.departments.items() if name and n.lower() == name.lower()),
                               None)
        else:
            target = await tickets.by_tid(self.db, tid) if tid else (
                await tickets.get(self.db, row["ticket_id"]) if row["ticket_id"] is not None else None)
            if target is not None:   # where the import will really go: past merges, as import_blocked follows them
                target = await tickets.resolve_merged(self.db, target)
            target_dept = target.department_id if target is not None else None
        if viewer.scope is not None and (target_dept is None or not viewer.sees(target_dept)):
            return await self.entry(request, viewer, 404, error=f"no ticket #{tid} of yours" if tid else
                                    "that department is not yours")
        assert self.app.env is not None and self.app.worker is not None
        try:
            done = await import_blocked(self.app.env, self.app.worker.preparer, log_id, tid, kind,
                                        f"web:{viewer.member.username}", force=force, new=new, department=department)
        except ImportRefused as exc:
            return await self.entry(request, viewer, 409, error=str(exc))
        log.info("import", extra={"kv": {"by": viewer.member.username, "entry": log_id, "ticket": done.tid,
                                         "kind": "new" if done.new else done.kind}})
        return RedirectResponse(f"/tickets/{done.tid}?done=imported#thread", status_code=303)

    async def reprocess(self, request: Request, viewer: Viewer) -> Response:
        log_id = int(request.path_params["log_id"])
        assert self.app.env is not None and self.app.worker is not None
        try:
            row = await reprocess(self.app.env, self.app.worker, log_id)
        except ImportRefused as exc:
            return await self.entry(request, viewer, 409, error=str(exc))
        log.info("reprocess", extra={"kv": {"by": viewer.member.username, "entry": log_id,
                                            "outcome": row["outcome"]}})
        return RedirectResponse(f"/import-log/{log_id}?done=reprocessed", status_code=303)


def _parsed(raw: bytes) -> dict[str, Any]:
    """What the message says, for the parsed view: its headers, text (or cleaned HTML) and parts."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        headers = [(k, str(v)) for k, v in msg.items()]
        body = msg.get_body(preferencelist=("plain", "html"))
        text, html = "", None
        if body is not None:
            content = body.get_content()
            if body.get_content_type() == "text/html":
                html = mailview.display(str(content), {}).html
            else:
                text = str(content)
        parts = [{"filename": part.get_filename() or "", "type": part.get_content_type(),
                  "size": len(part.get_payload(decode=True) or b"")}
                 for part in msg.walk() if not part.is_multipart() and part is not body]
        return {"headers": headers, "text": text, "html": html, "parts": parts, "problem": ""}
    except Exception as exc:   # malformed mail: say so, the raw view still shows it
        return {"headers": [], "text": "", "html": None, "parts": [],
                "problem": f"the message could not be parsed for display: {type(exc).__name__}: {exc}"}
