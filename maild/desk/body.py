"""A staff member's text as it goes on the ticket: merge fields filled in, the signature added, and
markdown rendered to sanitised HTML (the text stays the plain-text alternative)."""

from __future__ import annotations

import re
from functools import cache

import nh3

MENTION = re.compile(r"(?<![\w.@+-])@([A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?)")


def first_name(name: str, email: str) -> str:
    name = name.strip()
    if name:
        return name.split()[0]
    return email.partition("@")[0]


def merge(text: str, name: str, email: str) -> str:
    """The seed's merge fields: [NAME], [FIRSTNAME], [EMAIL] of the ticket's submitter."""
    return (text.replace("[NAME]", name.strip() or email)
                .replace("[FIRSTNAME]", first_name(name, email))
                .replace("[EMAIL]", email))


def with_signature(text: str, signature: str) -> str:
    text, signature = text.rstrip(), signature.strip("\n")
    if not signature.strip() or text.endswith(signature.rstrip()):
        return text
    return f"{text}\n\n{signature}"


@cache
def _markdown():  # type: ignore[no-untyped-def]
    from markdown_it import MarkdownIt

    # Raw HTML in the source stays text (html=False); links need a safe scheme (markdown-it's validator).
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})


def to_html(text: str) -> str:
    """Markdown → HTML, then nh3 (an allow-list sanitiser) in case anything got through."""
    return nh3.clean(_markdown().render(text), link_rel="noopener noreferrer nofollow")


def mentions(text: str) -> list[str]:
    """``@username`` names in a note, in order, once each (not e-mail addresses)."""
    return list(dict.fromkeys(m.lower() for m in MENTION.findall(text)))
