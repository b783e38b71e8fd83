"""Quoted history and reply separators, stripped from replies so the thread shows what is new.
The whole text is always kept as ``body_full``. Pure and linear: runs on any text.

Covers Gmail, Apple Mail, Thunderbird ("On … wrote:", also over two lines and in other languages),
Outlook desktop and web (a From:/Sent: header block, "-----Original Message-----", a line of
underscores), Yahoo/AOL/Comcast, ``>`` quoted lines, and our own "reply above this line" marker."""

from __future__ import annotations

import re

REPLY_MARKER = "##- Please type your reply above this line -##"

_WROTE = re.compile(
    r"^[\s>-]*(on\b|am\b|le\b|el\b|il\b|op\b|den\b|w dniu\b|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}).{0,300}?"
    r"(wrote|schrieb|a écrit|escribió|ha scritto|scrisse|schreef|skrev|napisał|написал[а]?|kirjoitti)"
    r"(\s[^:]{0,200})?:\s*$",  # German and others put the name after the verb
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(original message|original message -|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|messaggio originale|forwarded message)\s*-*|_{10,})\s*$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\s*\**(from|von|de|van|da)\s*:\**\s+\S.*(@|<)", re.IGNORECASE)
_HEADER_DATE = re.compile(r"^\s*\**(sent|date|gesendet|envoyé|enviado|datum)\s*:", re.IGNORECASE)
_HEADER_OTHER = re.compile(r"^\s*\**(to|an|à|para|subject|betreff|objet|asunto)\s*:", re.IGNORECASE)
_ATTRIBUTION_HINT = re.compile(r"@|\d")   # "On <date>, <someone> wrote:" names a date or an address


def _reply_header(lines: list[str], i: int) -> int:
    """How many lines from ``i`` form the header of a quoted reply (0: none)."""
    line = lines[i]
    if REPLY_MARKER.lower() in line.lower():
        return 1
    if _SEPARATOR.match(line):
        # A line of underscores is also a table rule: only a quoted header block after it makes it a separator.
        if line.strip().startswith("_") and not any(_is_header_block(lines, j) for j in range(i + 1, i + 3)):
            return 0
        return 1
    if _WROTE.match(line) and _ATTRIBUTION_HINT.search(line):
        return 1
    if i + 1 < len(lines) and len(line) < 300:
        joined = f"{line} {lines[i + 1]}"
        if _WROTE.match(joined) and _ATTRIBUTION_HINT.search(joined):
            return 2
    if _is_header_block(lines, i):
        return 1
    return 0


def _is_header_block(lines: list[str], i: int) -> bool:
    """Outlook's quoted header: From: with an address, then a Sent:/Date: line and a To:/Subject: line."""
    if i >= len(lines) or not _HEADER_FROM.match(lines[i]):
        return False
    following = lines[i + 1:i + 5]
    return any(_HEADER_DATE.match(n) for n in following) and any(_HEADER_OTHER.match(n) for n in following)


def visible(text: str) -> str:
    """The new part of a reply: what comes before the quoted history, without ``>`` lines."""
    lines = text.split("\n")
    kept: list[str] = []
    written = False  # any new text yet (kept never holds ">" lines)
    i = 0
    while i < len(lines):
        span = _reply_header(lines, i)
        if span:
            if written:
                break  # top-posted: everything from here on is history
            i += span  # bottom-posted (the new text comes after the quote): drop the header, read on
            continue
        if not lines[i].lstrip().startswith(">"):
            kept.append(lines[i].rstrip())
            written = written or bool(lines[i].strip())
        i += 1
    out = "\n".join(kept).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", out).strip()
