"""Content-Transfer-Encoding decoded the way mail clients do it: as far as the data goes, never failing.

The standard library gives up on base64 whose length is one more than a multiple of four (it returns the
base64 text itself), stops at the first padding of concatenated base64 blocks, ignores a label with stray
whitespace, and keeps ``=`` soft line breaks followed by trailing blanks. Here every repair is named, so
the import log says what was wrong with the mail.
"""

from __future__ import annotations

import binascii
import re

_B64_ALPHABET = re.compile(rb"[A-Za-z0-9+/]+")
_B64_STRAY = re.compile(rb"[^A-Za-z0-9+/=\s]")
_QP_SOFT_BREAK = re.compile(rb"=[ \t]+(?=\r?\n|\r|\Z)")


def decode_base64(data: bytes) -> tuple[bytes, list[str]]:
    """Base64 decoded as far as it goes: stray characters skipped, a ``=`` that pads nothing ignored, missing
    padding supplied, whole padded blocks glued together decoded in turn (other text after a padding
    ignored, as Dovecot does), a last lone character (6 bits, no byte) dropped.
    Returns the bytes and what was repaired (empty for well-formed input)."""
    compact = b"".join(data.split())
    try:
        return binascii.a2b_base64(compact, strict_mode=True), []
    except (binascii.Error, ValueError):
        pass
    repairs: list[str] = []
    stray = len(_B64_STRAY.findall(data))
    if stray:
        repairs.append(f"{stray} stray character{'s' if stray != 1 else ''} skipped")
    out = bytearray()
    block = bytearray()
    blocks = misplaced = 0
    tokens = list(re.finditer(rb"[A-Za-z0-9+/]+|=+", compact))
    for i, token in enumerate(tokens):
        if token[0][:1] != b"=":
            block += token[0]
        elif len(block) % 4 in (2, 3):  # real padding: the block ends here
            out += binascii.a2b_base64(bytes(block) + b"=" * (4 - len(block) % 4))
            block.clear()
            blocks += 1
            if blocks == 1:
                # What follows is more base64 only if it is made of whole blocks (padded, or ending whole).
                following = b"".join(t[0] for t in tokens[i + 1:])
                if not _whole_blocks(following):
                    ignored = len(following) - following.count(b"=")
                    repairs.append(f"{ignored} characters after the padding ignored")
                    break
        else:  # padding where none belongs (after a whole group of four)
            misplaced += 1
    else:
        whole = len(block) - len(block) % 4
        out += binascii.a2b_base64(bytes(block[:whole])) if whole else b""
        if len(block) % 4 == 1:
            repairs.append("a last lone character (no whole byte) dropped")
        elif len(block) % 4:
            out += binascii.a2b_base64(bytes(block[whole:]) + b"=" * (4 - len(block) % 4))
            repairs.append("missing padding supplied")
        blocks += bool(block)
    if blocks > 1:
        repairs.insert(0, f"{blocks} concatenated blocks decoded")
    if misplaced:
        repairs.append("misplaced padding ignored")
    return bytes(out), repairs


def _whole_blocks(text: bytes) -> bool:
    """Whether ``text`` (base64 characters and ``=`` only) is a run of correctly padded blocks."""
    for m in re.finditer(rb"([A-Za-z0-9+/]*)(=*)", text):
        if m[1] and (len(m[1]) % 4 == 1 or (len(m[1]) + len(m[2])) % 4 or (m[2] and len(m[1]) % 4 == 0)):
            return False
    return True


def decode_quoted_printable(data: bytes) -> tuple[bytes, list[str]]:
    """Quoted-printable as clients read it: a soft line break may have blanks after its ``=`` (added in
    transit), and a malformed escape such as ``=XY`` is kept as it is."""
    repairs: list[str] = []
    fixed, n = _QP_SOFT_BREAK.subn(b"=", data)
    if n:
        repairs.append(f"{n} soft line break{'s' if n != 1 else ''} with trailing blanks")
    return binascii.a2b_qp(fixed), repairs


def decode(data: bytes, encoding: str) -> tuple[bytes, list[str]] | None:
    """``data`` decoded from the Content-Transfer-Encoding ``encoding`` (label read leniently), with the
    repairs made; None for an identity or unknown encoding, whose bytes are the payload as they are."""
    label = encoding.strip().strip('"').split(";")[0].strip().lower()
    if label == "base64":
        return decode_base64(data)
    if label == "quoted-printable":
        return decode_quoted_printable(data)
    return None
