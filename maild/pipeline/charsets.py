"""Charsets: bytes to text when the label is wrong, missing or absent, without losing a byte.

- :func:`decode_text` reads a text part (or an RFC 2047 word) in its declared charset or a superset of
  it, then as UTF-8; ISO-2022-JP with the NEC/IBM extensions (CP50220/50221) and Japanese mail labelled in
  the wrong Japanese charset are read as what they are; what still fails is read line by line, so UTF-8
  lines among Latin-1 ones (a broken forwarder) each keep their own charset. It never raises and never
  replaces a byte that some charset tried could decode: the last resort, cp1252 with latin-1 for its five
  holes, decodes every byte.
- :func:`guess` and :func:`decode_8bit` read raw 8-bit header text (a subject or a file name sent without
  RFC 2047): UTF-8, then the message's own charsets (the body's declared ones), then a detector
  (charset-normalizer) over all such header bytes of the message at once.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

# Labels that mail in the wild gets wrong: use the superset that decodes what the sender really wrote.
CHARSET_SUPERSETS = {
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "ms_kanji": "cp932",
    "csshiftjis": "cp932",
    "windows-874": "cp874",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
}
# Labels with more than one superset, none of which covers the others: each is tried in turn.
CHARSET_FAMILIES = {
    # Half-width katakana (ESC ( I) only in _ext; JIS X 0212 and the 2004 planes in the others.
    "iso-2022-jp": ("iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004"),
    "csiso2022jp": ("iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004"),
    "big5": ("cp950", "big5hkscs"),
}
# Every label of a Japanese charset: text so labelled may be in any of them (and often is).
JAPANESE = {"iso-2022-jp", "csiso2022jp", "iso-2022-jp-1", "iso-2022-jp-2", "iso-2022-jp-3", "iso-2022-jp-2004",
            "shift_jis", "shift-jis", "sjis", "x-sjis", "windows-31j", "ms_kanji", "csshiftjis", "cp932",
            "euc-jp", "x-euc-jp", "eucjp", "cseucpkdfmtjapanese"}
# What a detector may answer for mail headers: the charsets mail is really sent in (no UTF-16, no EBCDIC).
DETECTABLE = ["utf_8", "gb18030", "big5", "cp932", "euc_jp", "cp949", "koi8_r", "koi8_u", "cp1251", "cp1252",
              "cp1250", "iso8859_2", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp874", "cp1258"]
# The common core of a superset: text whose letters fall inside it is more likely what the sender wrote.
_CORE = {"gb18030": "gb2312", "cp949": "euc_kr", "cp932": "shift_jis", "euc_jp": "euc_jp", "big5": "big5"}
_GETA = "\u3013"    # 〓: the Japanese mark for a character that cannot be shown
_JIS_ESCAPE = re.compile(rb"\x1b(?:\$[@B]|\(I)")


def _lost_as_latin1(exc: UnicodeError) -> tuple[str, int]:
    """cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: take them as latin-1 (the C1 controls)."""
    assert isinstance(exc, UnicodeDecodeError)
    return exc.object[exc.start:exc.end].decode("latin-1"), exc.end


codecs.register_error("ticketd-cp1252", _lost_as_latin1)


def _broken_utf8_as_cp1252(exc: UnicodeError) -> tuple[str, int]:
    """The bytes of broken UTF-8 (a character cut off at the end, a stray Latin-1 byte) as cp1252."""
    assert isinstance(exc, UnicodeDecodeError)
    return exc.object[exc.start:exc.end].decode("cp1252", errors="ticketd-cp1252"), exc.end


codecs.register_error("ticketd-utf8", _broken_utf8_as_cp1252)


def _mostly_utf8(data: bytes) -> bool:
    """UTF-8 but for a few bytes (at least four good characters for each bad byte): a name cut off in the
    middle of a character, one stray byte. Text in a legacy charset hardly ever forms even two."""
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 0x7F) - bad
    return good >= 2 and bad * 4 <= good


def label_of(charset: str | None) -> str:
    return (charset or "").strip().strip('"').strip("'").lower()


@lru_cache(maxsize=256)
def candidates(charset: str | None) -> tuple[str, ...]:
    """The codecs to try for a declared charset, superset first; unknown labels give none."""
    label = label_of(charset)
    if not label:
        return ()
    names = CHARSET_FAMILIES.get(label, (CHARSET_SUPERSETS.get(label, label),))
    found = []
    for name in names:
        try:
            found.append(codecs.lookup(name).name)
        except (LookupError, ValueError):  # unknown, or not even text (8-bit bytes in a label)
            continue
    return tuple(found)


@lru_cache(maxsize=256)
def single_byte(name: str) -> bool:
    """One byte, one character, ASCII as itself: such a charset decodes (nearly) anything, so decoding
    without error proves nothing and UTF-8 is tried before it."""
    try:
        for b in range(256):
            decoder = codecs.getincrementaldecoder(name)(errors="replace")
            out = decoder.decode(bytes([b]), final=False)
            if len(out) != 1 or (b < 0x80 and out != chr(b)):
                return False
    except (LookupError, ValueError, TypeError):
        return False
    return True


def _wide(name: str) -> bool:
    return name.startswith(("utf-16", "utf_16", "utf-32", "utf_32"))


def _strict(data: bytes, name: str) -> str | None:
    try:
        return data.decode(name)
    except (LookupError, UnicodeDecodeError, ValueError):
        return None


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes of a text part to str: the declared charset (or its supersets), then UTF-8, then line by line;
    never raises, never loses a byte."""
    label = label_of(charset)
    names = candidates(label)
    japanese = label in JAPANESE
    wide = any(_wide(n) for n in names)
    if not wide and _JIS_ESCAPE.search(data):
        # ISO-2022-JP whatever the label says (old mailers labelled it us-ascii, iso-8859-1 or nothing; these
        # escapes mean nothing else); with Windows' extensions when the standard codecs fail
        for name in CHARSET_FAMILIES["iso-2022-jp"]:
            if (text := _strict(data, name)) is not None:
                return _nfc(text)
        return _nfc(_by_line(_iso2022jp_to_sjis(data), ["cp932", "utf-8"]))
    multi = [n for n in names if not single_byte(n)]
    single = [n for n in names if single_byte(n)]
    if japanese and not data.isascii():
        # Japanese in the wrong Japanese charset: EUC-JP decodes as Shift_JIS too (into half-width kana and
        # stray kanji). Japanese prose is full of hiragana in its right charset only; on a tie (half-width
        # katakana text, a name in kanji) the declared charset, then Shift_JIS.
        found = [t for n in dict.fromkeys([*multi, "cp932", "euc_jp"]) if (t := _strict(data, n)) is not None]
        if found:
            return _nfc(max(found, key=_hiragana))
    for name in multi:
        text = _strict(data, name)
        if text is not None:
            return _nfc(text)
    text = _strict(data, "utf-8")
    if text is not None:
        return _nfc(text)
    if japanese:
        multi += ["cp932", "euc_jp"]
    if wide:  # lines of UTF-16 cannot be split on a byte
        return _nfc(data.decode("cp1252", errors="ticketd-cp1252"))
    return _nfc(_by_line(data, [*multi, "utf-8", *single]))


def _by_line(data: bytes, names: Sequence[str]) -> str:
    """Each line in the first of ``names`` that decodes it, else cp1252: the part of a broken forwarder,
    UTF-8 lines among Latin-1 ones, reads right line by line."""
    whole = None if not names else _strict(data, names[0])
    if whole is not None:
        return whole
    out = []
    for line in data.splitlines(keepends=True):
        for name in names:  # ASCII lines too: UTF-7 and HZ are written in ASCII
            text = _strict(line, name)
            if text is not None:
                out.append(text)
                break
        else:
            out.append(_last_resort(line))
    return "".join(out)


def _last_resort(data: bytes) -> str:
    """Bytes no charset tried could read: UTF-8 as far as it goes when it mostly is, else cp1252 (with
    latin-1 for its five holes). Either way every byte is kept as a character."""
    if _mostly_utf8(data):
        return data.decode("utf-8", errors="ticketd-utf8")
    return data.decode("cp1252", errors="ticketd-cp1252")


def _hiragana(text: str) -> int:
    return sum(1 for ch in text if "\u3041" <= ch <= "\u309f")


def _jis_to_sjis(c1: int, c2: int) -> bytes:
    s1 = (c1 + 1) // 2 + 0x70
    s1 += 0x40 if s1 >= 0xA0 else 0
    s2 = (c2 + 0x1F + (1 if c2 >= 0x60 else 0)) if c1 & 1 else c2 + 0x7E
    return bytes([s1, s2])


_JIS_PAIR = re.compile(rb"[\x21-\x7e]{2}")
_SJIS_OF = {bytes([c1, c2]): _jis_to_sjis(c1, c2) for c1 in range(0x21, 0x7F) for c2 in range(0x21, 0x7F)}
_KANA = bytes(b | 0x80 if 0x21 <= b <= 0x5F else b for b in range(256))
# An escape sequence (intermediate bytes, then a final byte), SO/SI, or a line end: where the mode changes.
_JIS_SHIFT = re.compile(rb"\x1b[\x20-\x2f]*[\x30-\x7e]?|[\x0e\x0f]|\r?\n|\r")


def _iso2022jp_to_sjis(data: bytes) -> bytes:
    """ISO-2022-JP as Windows writes it (CP50220/50221: NEC row 13 and the NEC-selected IBM extensions in
    JIS X 0208 mode, half-width katakana by ``ESC ( I`` or SO/SI), and raw Shift_JIS bytes in between, all
    to Shift_JIS bytes for cp932. Escape sequences never reach the text: an unknown designation's
    characters become 〓 (U+3013). Linear, a run between two mode changes at a time."""
    out = bytearray()
    mode, pos = "ascii", 0
    geta = _GETA.encode("cp932")
    for m in [*_JIS_SHIFT.finditer(data), None]:
        run = data[pos:m.start() if m else len(data)]
        if mode == "jis":
            out += _JIS_PAIR.sub(lambda p: _SJIS_OF[p.group()], run)
        elif mode == "other":   # JIS X 0212/0213, KS C 5601, GB 2312: not in cp932
            out += _JIS_PAIR.sub(lambda p: geta, run)
        elif mode == "kana":
            out += run.translate(_KANA)
        else:
            out += run           # ASCII, or raw 8-bit (Shift_JIS) bytes
        if m is None:
            break
        pos, shift = m.end(), m.group()
        if shift in (b"\x1b(B", b"\x1b(J", b"\x1b(H", b"\x0f"):
            mode = "ascii"
        elif shift in (b"\x1b(I", b"\x0e"):
            mode = "kana"
        elif shift in (b"\x1b$@", b"\x1b$B"):
            mode = "jis"
        elif shift.startswith(b"\x1b$"):
            mode = "other"
        elif not shift.startswith(b"\x1b"):  # lines end in ASCII; a sender who forgot to say so is forgiven
            mode = "ascii"
            out += shift
    return bytes(out)


def _nfc(text: str) -> str:
    """Composed form, so that Windows-1258's base letter + combining tone mark reads (and searches) as the
    one letter everybody else writes. Cheap when the text already is NFC, as nearly all is."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


# -- raw 8-bit header text -------------------------------------------------------------------------------


def guess(data: bytes, hints: Iterable[str] = ()) -> str | None:
    """The charset of raw 8-bit header bytes (all of one message's, joined): UTF-8 if they are that; else
    the first of ``hints`` (the body's declared charsets) that decodes them all, a single-byte one only if
    its reading is as good as the detector's best (any byte decodes in those, so decoding proves nothing);
    else what the detector finds likeliest. None for plain ASCII."""
    if data.isascii():
        return None
    if _strict(data, "utf-8") is not None or _mostly_utf8(data):
        return "utf-8"
    ranked: list[tuple[float, str, str]] | None = None
    for hint in hints:
        for name in candidates(hint):
            text = None if _wide(name) else _strict(data, name)
            if text is None:
                continue
            if not single_byte(name):
                return name
            ranked = _ranked(data) if ranked is None else ranked
            tied = _least_chaos(ranked)
            best = max((_plausibility(reading, enc) for _, enc, reading in tied), default=0.0)
            if not tied or (any(reading == text for _, _, reading in tied) and _plausibility(text, name) >= best):
                return name
    return _pick(_ranked(data) if ranked is None else ranked)


def detect(data: bytes) -> str | None:
    """charset-normalizer's answer among :data:`DETECTABLE` (see :func:`_pick`)."""
    return _pick(_ranked(data))


def _ranked(data: bytes) -> list[tuple[float, str, str]]:
    """(chaos, encoding, reading) of every charset of :data:`DETECTABLE` that charset-normalizer finds
    possible; empty when it finds none (or fails: a detector bug must not stop a message)."""
    try:
        from charset_normalizer import from_bytes

        return [(r.chaos, r.encoding, str(r)) for r in from_bytes(data, cp_isolation=DETECTABLE, explain=False)
                if r.encoding in DETECTABLE]
    except Exception:
        return []


def _least_chaos(ranked: list[tuple[float, str, str]]) -> list[tuple[float, str, str]]:
    least = min((chaos for chaos, _, _ in ranked), default=0.0)
    return [r for r in ranked if r[0] <= least + 0.01]


def _pick(ranked: list[tuple[float, str, str]]) -> str | None:
    """Short text (a name, a subject) often leaves the detector several answers of equal chaos; then the
    one whose letters are most plausible wins: letters in the common core of the charset, one writing
    system per word (no Cyrillic amid Latin letters, no Hangul amid Han), no capital after a small letter
    inside a word (KOI8-R read as cp1251), and the more widely used charset on a tie."""
    tied = _least_chaos(ranked)
    if not tied:
        return None
    scored = [(_plausibility(reading, enc), -DETECTABLE.index(enc), enc) for _, enc, reading in tied]
    return max(scored)[2]


_WORD = re.compile(r"[^\W\d_]+")


def _script(ch: str) -> str:
    """The writing system of a letter; kanji and kana are one (Japanese writes them in one word)."""
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA")):
        return "HAN"
    for script in ("HANGUL", "CYRILLIC", "GREEK", "HEBREW", "ARABIC", "THAI"):
        if name.startswith(script):
            return script
    return "LATIN" if ch.isascii() or "LATIN" in name else name.split(" ")[0]


def _plausibility(text: str, encoding: str) -> float:
    wide = [ch for ch in text if ord(ch) > 0x7F]
    if not wide:
        return 1.0
    core = _CORE.get(encoding)
    good = 0
    for word in _WORD.findall(text):
        if len({_script(ch) for ch in word}) > 1:  # "JЖrg": Latin-1 read as KOI8-R; Hangul amid Han
            continue
        for k, ch in enumerate(word):
            if ord(ch) <= 0x7F or "\uff61" <= ch <= "\uff9f":
                continue
            if k and ch.isupper() and word[k - 1].islower():
                continue
            if core is not None:
                try:
                    ch.encode(core)
                except UnicodeEncodeError:
                    continue
            good += 1
    return good / len(wide)


def decode_8bit(data: bytes, hints: Iterable[str] = (), detector: bool = True) -> str:
    """Raw 8-bit header bytes to text: UTF-8, the ``hints`` in order (usually :func:`guess`'s answer
    first), the detector, then :func:`decode_text`'s line-by-line last resort. Never U+FFFD. Raw
    ISO-2022-JP (old Japanese mailers wrote headers so, without RFC 2047) is read as such. ``detector``
    False: the caller ran it over these bytes already (:func:`guess`), don't again for each value."""
    if _JIS_ESCAPE.search(data):
        return decode_text(data, "iso-2022-jp")
    if data.isascii():
        return data.decode("ascii")
    text = _strict(data, "utf-8")
    if text is not None:
        return _nfc(text)
    if _mostly_utf8(data):
        return _nfc(data.decode("utf-8", errors="ticketd-utf8"))
    for hint in hints:
        for name in candidates(hint):
            if not _wide(name) and (text := _strict(data, name)) is not None:
                return _nfc(text)
    found = detect(data) if detector else None
    if found and (text := _strict(data, found)) is not None:
        return _nfc(text)
    return decode_text(data, None)
