"""The web view's pages: one Jinja2 environment (autoescaped, strict), its filters, and the HTML responses
every page shares (no caching of staff pages)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.responses import HTMLResponse

from maild.notify import links

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates" / "web"


def _when(stamp: str | None) -> str:
    """A stored stamp as ``2026-12-06 15:04`` (UTC)."""
    return (stamp or "")[:16].replace("T", " ")


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


NOTICES = (   # what a page says after an action redirected to it (?done=...): known forms only, never free text
    (re.compile(r"closed-(\d{1,4})"), "Tickets closed: {}."),
    (re.compile(r"moved-(\d{1,12})"), "Ticket #{} is now in a department you do not work in."),
    (re.compile(r"replied-(\d{1,12})"), "Reply sent on ticket #{}."),
    (re.compile(r"retry-(\d{1,18})"), "Mail {} queued again; the sender tries it now."),
    (re.compile(r"(added|saved|deleted)"), "Predefined reply {}."),
    (re.compile(r"deleted-(\d{1,12})"), "Deleted: {}."),
)


def notice(done: str) -> str:
    """The sentence for a ``done`` parameter; "" for anything else (nobody can make a page say their text)."""
    for pattern, text in NOTICES:
        if found := pattern.fullmatch(done):
            return text.format(found.group(1))
    return ""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


class Pages:
    def __init__(self, now: Any = None) -> None:
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(when=_when, size=_size, slug=_slug, scrub=links.scrub)
        self.env.globals.update(query=self.query)
        self._now = now

    @staticmethod
    def query(base: dict[str, Any], **changes: Any) -> str:
        """``base`` (a page's query parameters) with ``changes``; empty values left out."""
        merged = {**base, **changes}
        return urlencode([(k, v) for k, v in merged.items() if v not in ("", None, False)], doseq=True)

    def render(self, name: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
               ) -> HTMLResponse:
        if self._now is not None:
            context.setdefault("now", self._now())
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status,
                            headers={"cache-control": "no-store", **(headers or {})})
