"""Jinja2 rendering of notification mail: one template per event and audience,
``templates/email/{client,staff}/{event}.j2``, each with a ``subject``, a ``text`` and optionally an
``html`` block. The html block is rendered with autoescape on; subject and text are plain text (the
subject is folded to one line). A directory named by ``notifications.templates`` overrides any file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.runtime import Context

BUILTIN = Path(__file__).resolve().parent.parent.parent / "templates" / "email"
FALLBACK = "_default.j2"   # an event a rule override sends to an audience that has no template of its own


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class TemplateMissing(Exception):
    """A template that a rule needs does not exist (a broken override directory)."""


class Renderer:
    def __init__(self, override: Path | None = None) -> None:
        folders = [str(override)] if override else []
        loader = jinja2.FileSystemLoader([*folders, str(BUILTIN)])
        # auto_reload off: templates are read once (a stat per mail otherwise); a restart picks up edits.
        common: dict[str, Any] = {"loader": loader, "undefined": jinja2.StrictUndefined, "trim_blocks": True,
                                  "lstrip_blocks": True, "keep_trailing_newline": True, "auto_reload": False}
        # Two environments over the same files: one escapes (html block), one does not (subject, text).
        self._text = jinja2.Environment(autoescape=False, **common)
        self._html = jinja2.Environment(autoescape=True, **common)

    def _pair(self, audience: str, name: str) -> tuple[jinja2.Template, jinja2.Template]:
        for candidate in (f"{audience}/{name}.j2", f"{audience}/{FALLBACK}"):
            try:
                return self._text.get_template(candidate), self._html.get_template(candidate)
            except jinja2.TemplateNotFound:
                continue
        raise TemplateMissing(f"no template {audience}/{name}.j2 (nor {audience}/{FALLBACK})")

    def render(self, audience: str, name: str, context: dict[str, Any]) -> Rendered:
        text_t, html_t = self._pair(audience, name)
        plain = text_t.new_context(context)
        subject = _block(text_t, "subject", plain)
        if subject is None:
            raise TemplateMissing(f"{text_t.name} has no subject block")
        text = _block(text_t, "text", plain) or ""
        html = _block(html_t, "html", html_t.new_context(context)) if "html" in html_t.blocks else None
        return Rendered(" ".join(subject.split()), text.strip() + "\n", html if html and html.strip() else None)

    @functools.cache  # noqa: B019 - one renderer for the process's life; a handful of templates
    def personal(self, audience: str, name: str) -> bool:
        """Does the template, or any it includes, use ``recipient``? If not, one rendering serves every
        recipient of an event. When in doubt (a dynamic include, an unreadable file): yes."""
        text_t, _ = self._pair(audience, name)
        return self._uses_recipient(text_t.name or "", set())

    def _uses_recipient(self, template_name: str, seen: set[str]) -> bool:
        if template_name in seen:
            return False
        seen.add(template_name)
        try:
            assert self._text.loader is not None
            source, _, _ = self._text.loader.get_source(self._text, template_name)
            tree = self._text.parse(source)
        except (OSError, jinja2.TemplateError):
            return True
        if "recipient" in meta.find_undeclared_variables(tree):
            return True
        return any(ref is None or self._uses_recipient(ref, seen) for ref in meta.find_referenced_templates(tree))

    def check(self, names: list[tuple[str, str]]) -> None:
        """Load every (audience, event) template the rules need: a broken override fails at start."""
        for audience, name in names:
            self._pair(audience, name)


def _block(template: jinja2.Template, name: str, context: Context) -> str | None:
    block = template.blocks.get(name)
    if block is None:
        return None
    return "".join(block(context))
