"""The web view's pages: one Jinja2 environment (autoescaped, strict), its filters, and the HTML responses
every page shares (no caching of staff pages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.responses import HTMLResponse

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


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


class Pages:
    def __init__(self, now: Any = None) -> None:
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(when=_when, size=_size, slug=_slug)
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
