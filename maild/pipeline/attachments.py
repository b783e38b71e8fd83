"""Attachments: give every non-body part a safe name and store its bytes, content-addressed.

Names from mail are never used on disk (the file store names files by hash); the safe name is what the
desk shows and offers for download.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import unicodedata

from maild.outcomes import Outcome
from maild.pipeline.context import Env, MessageContext, StoredFile

MAX_NAME = 120
# C0/C1 controls, bidi overrides/isolates and zero-width characters: they disguise names.
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_RESERVED = re.compile(r'[<>:"|?*]')


def safe_filename(name: str | None, index: int, content_type: str) -> str:
    """A name safe to show and to download: no path parts, controls, bidi tricks or leading dots."""
    clean = unicodedata.normalize("NFC", name or "")
    clean = clean.replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE_CHARS.sub("", clean)
    clean = _RESERVED.sub("_", clean).strip().lstrip(".").strip()
    if clean in ("", ".", ".."):
        ext = mimetypes.guess_extension(content_type) or ""
        return f"attachment_{index}{ext}"
    if len(clean) > MAX_NAME:
        stem, dot, ext = clean.rpartition(".")
        ext = ext[:16] if dot else ""
        clean = (stem if dot else clean)[: MAX_NAME - len(ext) - 1].rstrip() + (f".{ext}" if ext else "")
    return clean


async def store(ctx: MessageContext, env: Env) -> Outcome | None:
    """Name the parts; their bytes are normally stored already by the prepare step."""
    parts = ctx.mail.content.parts
    if not parts:
        return None
    missing = [p for p in parts if p.sha256 is None]
    if missing:
        shas = await asyncio.to_thread(lambda: [env.files.put(p.data) for p in missing])
        for part, sha in zip(missing, shas, strict=True):
            part.sha256 = sha
    unnamed = 0
    for part in parts:
        if not part.filename:
            unnamed += 1
        assert part.sha256 is not None
        ctx.files.append(
            StoredFile(
                filename=safe_filename(part.filename, unnamed, part.content_type),
                content_type=part.content_type,
                size=part.size,
                sha256=part.sha256,
                content_id=part.content_id,
                inline=part.inline,
            )
        )
    return None
