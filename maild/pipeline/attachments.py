"""Attachments: safe names, types judged by content, the allow-list and size limits (WHMCS 8.3 rules),
then the bytes stored content-addressed.

Names from mail are never used on disk (the file store names files by hash); the safe name is what the
desk shows and offers for download. :func:`judge` is pure and runs in the prepare step; every file it
refuses is named in the import-log row, never dropped silently.
"""

from __future__ import annotations

import io
import mimetypes
import re
import unicodedata
import zipfile
from dataclasses import dataclass

from maild.desk.core import StoredFile
from maild.outcomes import Outcome
from maild.pipeline.content import Part
from maild.pipeline.context import Env, MessageContext
from maild.store.blobs import BlobSpec

MAX_NAME = 120
_RESERVED = re.compile(r'[<>:"|?*]')
# They disguise names: C0/C1 controls (Cc), format characters (Cf: bidi overrides, isolates and marks,
# zero-width characters, U+061C, BOM), line and paragraph separators.
_HIDDEN = ("Cc", "Cf", "Zl", "Zp")


def safe_filename(name: str | None, index: int, content_type: str) -> str:
    """A name safe to show and to download: no path parts, controls, bidi tricks or leading dots."""
    clean = unicodedata.normalize("NFC", name or "")
    clean = clean.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(ch for ch in clean if unicodedata.category(ch) not in _HIDDEN)
    clean = _RESERVED.sub("_", clean).strip().lstrip(".").strip()
    if clean in ("", ".", ".."):
        ext = mimetypes.guess_extension(content_type) or ""
        return f"attachment_{index}{ext}"
    if len(clean) > MAX_NAME:
        stem, dot, ext = clean.rpartition(".")
        ext = ext[:16] if dot else ""
        clean = (stem if dot else clean)[: MAX_NAME - len(ext) - 1].rstrip() + (f".{ext}" if ext else "")
    return clean


EXECUTABLE_TYPES = {
    "application/x-dosexec", "application/x-executable", "application/x-sharedlib", "application/x-mach-binary",
    "application/x-msdownload", "application/x-msi", "application/x-ms-shortcut", "application/x-elf",
    "application/x-pie-executable", "application/vnd.microsoft.portable-executable", "text/x-shellscript",
    "application/x-shellscript", "text/x-msdos-batch", "application/x-bat", "application/hta",
}
TNEF = "application/vnd.ms-tnef"
# Content a browser would run if the desk ever served it inline, whatever the file is called.
ACTIVE_TYPES = {"text/html", "application/xhtml+xml", "image/svg+xml", "application/javascript", "text/javascript",
                "application/x-httpd-php", "text/x-php"}
# What the content of an allowed extension may be. Extensions not listed here are judged by the
# executable and active-content rules only.
EXPECTED = {
    "png": {"image/png"}, "jpg": {"image/jpeg"}, "jpeg": {"image/jpeg"}, "gif": {"image/gif"},
    "pdf": {"application/pdf"}, "zip": {"application/zip", "application/x-zip-compressed"},
    "txt": {"text/plain", "text/csv", "application/csv", "text/x-log"},
    "log": {"text/plain", "text/x-log"}, "csv": {"text/plain", "text/csv", "application/csv"},
    "eml": {"message/rfc822", "text/plain"},
}
VAGUE_TYPES = {"application/octet-stream", "application/x-empty", "inode/x-empty", ""}
EXTENSIONS = {"text/plain": "txt", "image/jpeg": "jpg", "message/rfc822": "eml", TNEF: "dat",
              "application/zip": "zip", "application/pdf": "pdf", "text/csv": "csv"}


OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Directory entries of a compound file (Word/Excel 97-2003, Outlook .msg) that hold a VBA project.
_OLE_VBA = ("_VBA_PROJECT", "VBA")
_OLE_ENTRY = 128   # directory entries are 128 bytes, and every sector starts on such a boundary


def _ole_entry(data: bytes, name: str) -> bool:
    """Whether the compound file ``data`` has a storage or stream called ``name``: the UTF-16 name at the
    start of a directory entry, with that entry's name length and a storage/stream type after it."""
    needle = name.encode("utf-16-le") + b"\x00\x00"
    at = data.find(needle, 512)
    while at >= 0:
        if at % _OLE_ENTRY == 0 and int.from_bytes(data[at + 64:at + 66], "little") == len(needle) \
                and data[at + 66:at + 67] in (b"\x01", b"\x02"):
            return True
        at = data.find(needle, at + 1)
    return False


def _zip_macros(data: bytes) -> str | None:
    """What makes an Office Open XML or OpenDocument container carry macros, or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            if "[Content_Types].xml" in names:
                if any(n.lower().endswith("vbaproject.bin") for n in names):
                    return "a VBA project (vbaProject.bin)"
                with z.open("[Content_Types].xml") as f:
                    if b"macroenabled" in f.read(1 << 20).lower():
                        return "a macro-enabled document type"
            elif "mimetype" in names and any(n.startswith(("Basic/", "Scripts/")) for n in names):
                return "OpenDocument macros (Basic/ or Scripts/)"
    except Exception:  # not a readable zip: the other rules judge it
        return None
    return None


def macros(data: bytes, detected: str) -> str | None:
    """Why an office document carries macros, judged by content whatever its name: a VBA project in a
    compound file (.doc/.xls and friends) or in an OOXML/ODF zip (.docm renamed .docx); None if none."""
    if "macroenabled" in detected.lower():
        return f"a macro-enabled document type ({detected})"
    if data.startswith(OLE_MAGIC):
        return next((f"a VBA project ({n} in the compound file)" for n in _OLE_VBA if _ole_entry(data, n)), None)
    if data.startswith(b"PK\x03\x04"):
        return _zip_macros(data)
    return None


@dataclass(frozen=True)
class AttachmentPolicy:
    """``[attachments]`` of the configuration (whose defaults are in :class:`maild.config.Settings`)."""

    allowed: frozenset[str]
    max_file: int
    max_total: int


def sniff(data: bytes) -> str:
    """The MIME type by content (libmagic), '' when it cannot tell."""
    try:
        import magic

        return str(magic.from_buffer(data[:65536], mime=True) or "")
    except Exception:  # libmagic trouble must not stop a message
        return ""


def _extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem and len(ext) <= 16 else ""


def judge(parts: list[Part], policy: AttachmentPolicy) -> list[str]:
    """Name, type and judge every part in place: a refused one gets ``dropped`` and loses its bytes.
    Returns one note per refused part, for the import log."""
    notes = []
    unnamed = total = 0
    for part in parts:
        detected = sniff(part.data)
        specific = detected if detected not in VAGUE_TYPES else ""
        if part.content_type == "message/rfc822" and specific in ("", "text/plain") \
                and _extension(part.filename or "") in ("", "eml"):
            # A forwarded message (its MIME structure says so) that libmagic only sees as text, e.g. one
            # starting with a DKIM-Signature: it stays an .eml.
            detected = specific = "message/rfc822"
        if not part.filename:
            unnamed += 1
        name = safe_filename(part.filename, unnamed, "")
        ext = _extension(name)
        if not ext:  # no extension: typed by content, '.unknown' when that fails (WHMCS 8.3)
            ext = EXTENSIONS.get(specific) or (mimetypes.guess_extension(specific) or ".unknown").lstrip(".")
            name = f"{name[:MAX_NAME - len(ext) - 1]}.{ext}"
        if detected == TNEF and ext != "dat":  # kept outside the allow-list, so never under a name it chose
            stem = name.rpartition(".")[0] or name
            name, ext = f"{stem[:MAX_NAME - 4]}.dat", "dat"
        size = len(part.data)
        by_type = True   # the first five refusals are about the type; staff may send any type
        if detected in EXECUTABLE_TYPES:
            reason = f"the content is an executable ({detected}), whatever its name says"
        elif detected in ACTIVE_TYPES and ext not in ("html", "htm", "svg"):
            reason = f"the content is {detected}, not what .{ext} says"
        elif macro := macros(part.data, detected):
            reason = f"an office document with macros ({macro}), whatever its name says"
        elif detected != TNEF and ext not in policy.allowed:
            reason = f".{ext} is not an allowed file type ({', '.join(sorted(policy.allowed))})"
        elif specific and ext in EXPECTED and specific not in EXPECTED[ext]:
            reason = f"the content is {specific}, not what .{ext} says"
        else:
            by_type = False
            if size > policy.max_file:
                reason = f"{size} bytes is over the {policy.max_file}-byte limit per file"
            elif total + size > policy.max_total:
                reason = f"the message's attachments would exceed {policy.max_total} bytes"
            else:
                reason = None
        if reason:
            part.dropped = reason
            # A refusal by type alone keeps the bytes: staff may send any file type (seed), and only the
            # later stages know whether the mail is a staff member's. Size refusals free them.
            part.by_type = by_type and size <= policy.max_file and total + size <= policy.max_total
            if part.by_type:
                part.filename = name
                part.content_type = specific or "application/octet-stream"
            else:
                part.data = b""
            notes.append(f"dropped attachment {name!r} ({specific or part.content_type}, {size} bytes): {reason}")
            continue
        total += size
        part.filename = name
        # Judged by content, never by the sender's label; what libmagic cannot tell is plain bytes.
        # (Outlook's winmail.dat, detected as TNEF, is kept as it is: no maintained library unpacks it.)
        part.content_type = specific or "application/octet-stream"
    return notes


async def store(ctx: MessageContext, env: Env) -> Outcome | None:
    """The kept parts, as the prepare step judged, named and stored them, become the message's files. A staff
    member's mail (signed reply token) also keeps the parts refused for their type alone (seed: admins may
    attach any file type); size limits still hold."""
    staff = ctx.staff is not None and ctx.via_token
    for part in ctx.mail.content.parts:
        if part.dropped is not None and part.by_type and staff and part.data:
            sha = BlobSpec.from_settings(env.settings).open().put(part.data)
            assert ctx.staff is not None
            ctx.notes.append(f"kept attachment {part.filename!r} from staff member {ctx.staff.username}"
                             f" (refused for a client: {part.dropped})")
            ctx.files.append(StoredFile(filename=part.filename or "attachment", content_type=part.content_type,
                                        size=len(part.data), sha256=sha, content_id=part.content_id,
                                        inline=part.inline))
        elif part.dropped is None:
            assert part.sha256 is not None and part.filename  # prepare.parse_all stored and named it
            ctx.files.append(StoredFile(filename=part.filename, content_type=part.content_type, size=part.size,
                                        sha256=part.sha256, content_id=part.content_id, inline=part.inline))
    return None
