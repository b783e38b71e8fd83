"""Files on the web view, for the staff desk and the client pages alike: a ticket's attachment sent as a
download (never run or rendered by the browser), and the files of a submitted form stored for a desk action
(limits checked first)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from maild.config import AttachmentSettings
from maild.desk import uploads
from maild.desk.core import StoredFile
from maild.desk.errors import Invalid
from maild.store.blobs import BlobSpec
from maild.store.errors import NotFound as BlobMissing
from maild.store.messages import Attachment

# Shown in the browser (thumbnails, cid: images): raster images only, never SVG or anything scriptable.
INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class FileGone(Exception):
    """The attachment's bytes are no longer stored."""


async def download(blobs: BlobSpec, attachment: Attachment, inline: bool = False) -> Response:
    """The attachment's bytes as a download (``inline``: in the page, for raster images only), in a sandbox
    whatever the browser makes of it. Raises :class:`FileGone`."""
    try:
        data = await asyncio.to_thread(blobs.open().read, attachment.sha256)
    except BlobMissing:
        raise FileGone(attachment.filename) from None
    inline = inline and attachment.content_type in INLINE_TYPES
    ctype = attachment.content_type
    if not inline and _active(ctype):
        ctype = "application/octet-stream"
    disposition = f"{'inline' if inline else 'attachment'}; filename*=UTF-8''{quote(attachment.filename)}"
    return Response(data, media_type=ctype, headers={
        "content-disposition": disposition, "cache-control": "private, max-age=3600",
        "content-security-policy": "default-src 'none'; sandbox"})


async def uploaded(form: FormData, limits: AttachmentSettings, blobs: BlobSpec, field: str = "files"
                   ) -> list[StoredFile]:
    """The form's files, stored (content-addressed) for the action that refers to them; :class:`Invalid`
    when one is over ``[attachments] max_file_size`` or all over ``max_total_size``."""
    named, total = [], 0
    for upload in [f for f in form.getlist(field) if isinstance(f, UploadFile) and f.filename]:
        data = await upload.read()
        if len(data) > limits.max_file_size:
            raise Invalid(f"{upload.filename} is {len(data)} bytes; the limit is {limits.max_file_size}"
                          " ([attachments] max_file_size)")
        total += len(data)
        named.append((upload.filename or "", data))
    if total > limits.max_total_size:
        raise Invalid(f"the files come to {total} bytes; the limit is {limits.max_total_size}"
                      " ([attachments] max_total_size)")
    if not named:
        return []
    return await asyncio.to_thread(uploads.store, blobs.open(), named)


def _active(content_type: str) -> bool:
    """Types a browser might run or render as a page: always sent as bytes."""
    ctype = content_type.lower()
    return "html" in ctype or "xml" in ctype or "javascript" in ctype or ctype.startswith("text/")
