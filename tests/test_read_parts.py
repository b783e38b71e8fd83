"""Mail read right, parts and attachments (issue 9, points 5, 6, 8, 9): blank plain alternatives, lenient
base64 and quoted-printable, forwarded messages kept byte-exact, the attachments clients really send,
macro-bearing office files and signature parts. End to end through `ticketd ingest` and `ticket show`,
with unit tests of the decoders and the macro check where the cases are many."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import sqlite3
import struct
import subprocess
import sys
import unicodedata
import zipfile
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest

from maild import config
from maild.config import AttachmentSettings
from maild.keys import load_or_create_secret
from maild.notify.tokens import Signer, with_tag
from maild.pipeline import transfer
from maild.pipeline.attachments import judge, macros
from maild.pipeline.content import Part, _blank
from maild.pipeline.parse import parse
from maild.store.sqlite.schema import connect_file as connect_sync
from maild.store.sqlite.schema import migration_files
from tests.helpers import CORPUS, Instance, make_mail
from tests.test_content import tiny_png

# --- helpers -----------------------------------------------------------------------------------------


def corpus_mail(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        raise AssertionError(f"the shared corpus message {path} is missing (a checkout of ../shared)")
    return path.read_bytes()


def ingest(instance: Instance, tmp_path: Path, raw: bytes, name: str = "m.eml") -> dict:
    """One message through `ticketd ingest` into a new ticket; the ticket as `ticket show --json` gives it."""
    path = tmp_path / name
    path.write_bytes(raw)
    out = instance.cli_json("ingest", "--department", "Technical Support", str(path))
    item = out["items"][0]
    assert item["outcome"] == "new_ticket", out
    return instance.cli_json("ticket", "show", item["ticket"])


def log_detail(instance: Instance) -> str:
    row = instance.cli_json("import-log")["items"][0]
    return json.loads(instance.cli("import-log", "show", str(row["id"]), "--json").stdout)["detail"]


def stored(instance: Instance, sha256: str) -> bytes:
    return (instance.state / "attachments" / sha256[:2] / sha256).read_bytes()


def files_of(ticket: dict) -> dict[str, dict]:
    return {f["filename"]: f for f in ticket["messages"][0]["attachments"]}


def raw_mail(headers: list[str], body: bytes, eol: bytes = b"\r\n") -> bytes:
    return eol.join(h.encode() for h in headers) + eol + eol + body


# --- point 5: an empty plain alternative never wins over the HTML ------------------------------------


def alternative(plain: str, html: str, related_image: bool = False) -> EmailMessage:
    msg = make_mail(subject="Blank plain", body=plain)
    msg.add_alternative(html, subtype="html")
    if related_image:
        msg.get_payload()[1].add_related(tiny_png(), maintype="image", subtype="png", cid="<i1@client.example>")
    return msg


def test_blank_plain_alternative_shows_the_html_text(instance: Instance, tmp_path: Path):
    msg = alternative(" \r\n\t\u200b\ufeff\u00a0\r\n",
                      "<html><body><p>The VPN drops</p><p>every hour</p></body></html>")
    t = ingest(instance, tmp_path, bytes(msg))
    m = t["messages"][0]
    assert m["body"] == "The VPN drops\n\nevery hour"
    assert "The VPN drops" in m["body_html"]


@pytest.mark.parametrize("plain", ["", "   ", "\n\n", "\u200b"])
def test_blank_plain_loses_to_html_inside_related_and_beside_other_text(plain: str):
    # multipart/mixed [alternative [plain (blank), related [html, image]], a text footer]
    msg = alternative(plain, "<p>Invoice 42 is wrong</p>", related_image=True)
    msg.make_mixed()
    footer = EmailMessage()
    footer.set_content("-- sent from the list\n")
    msg.attach(footer)
    content = parse(bytes(msg)).content
    assert content.text == "Invoice 42 is wrong\n\n-- sent from the list"
    assert [p.content_type for p in content.parts] == ["image/png"]


def test_corpus_mail_with_a_blank_plain_alternative():
    # An empty text/plain beside <body>Test</body> (SpamScope's fixture): the thread shows "Test".
    content = parse(corpus_mail("spamscope-mail-parser/mail_test_17.eml")).content
    assert content.text == "Test"
    assert "<body>Test</body>" in (content.html or "")


def test_a_plain_part_with_text_still_wins():
    content = parse(bytes(alternative("Plain words\n", "<p>HTML words</p>"))).content
    assert content.text == "Plain words" and "HTML words" in (content.html or "")


# --- point 6: lenient base64 and quoted-printable ----------------------------------------------------

PAYLOAD = bytes(range(256)) * 3 + b"tail"   # 772 bytes: the base64 ends in padding


@pytest.mark.parametrize(("encoded", "expected", "repair"), [
    (base64.b64encode(PAYLOAD).rstrip(b"="), PAYLOAD, "missing padding"),
    (base64.b64encode(PAYLOAD)[:40] + b"!*\x00" + base64.b64encode(PAYLOAD)[40:], PAYLOAD, "3 stray characters"),
    (base64.b64encode(PAYLOAD)[:-4] + b"b", PAYLOAD[:-1], "lone character"),   # cut in transit
    (base64.b64encode(b"first") + base64.b64encode(b"second"), b"firstsecond", "2 concatenated blocks"),
    # after a padding, only whole blocks are read on (Dovecot's case: a word of text there)
    (base64.b64encode(b"kept") + b" ignored", b"kept", "7 characters after the padding ignored"),
])
def test_base64_is_decoded_as_far_as_it_goes(encoded: bytes, expected: bytes, repair: str):
    wrapped = b"\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    data, repairs = transfer.decode_base64(wrapped)
    assert data == expected
    assert any(repair in r for r in repairs), repairs


def test_well_formed_base64_needs_no_repair():
    assert transfer.decode_base64(base64.encodebytes(PAYLOAD)) == (PAYLOAD, [])


def test_quoted_printable_soft_breaks_with_trailing_blanks():
    data, repairs = transfer.decode_quoted_printable(b"one =  \r\ntwo=\t\r\nthree =3D =XY\r\n")
    assert data == b"one twothree = =XY\r\n"
    assert repairs == ["2 soft line breaks with trailing blanks"]


def test_damaged_base64_attachment_is_stored_decoded_and_the_repair_logged(instance: Instance, tmp_path: Path):
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
    b64 = base64.b64encode(pdf).decode()
    damaged = "\r\n".join(b64[i:i + 72] for i in range(0, len(b64), 72)).rstrip("=")
    damaged = damaged[:100] + "*" + damaged[100:]          # a stray character too
    body_b64 = base64.b64encode(b"Der Drucker brennt, schon wieder.\n").decode().rstrip("=")
    boundary = "b-1"
    raw = raw_mail(
        ["From: Alice <alice@client.example>", "To: support@helpdesk.example", "Subject: Damaged",
         "Message-ID: <damaged@client.example>", "MIME-Version: 1.0",
         f'Content-Type: multipart/mixed; boundary="{boundary}"'],
        (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
         f"Content-Transfer-Encoding: base64 \r\n\r\n{body_b64}\r\n"      # a label with a trailing blank
         f"--{boundary}\r\nContent-Type: application/pdf; name=report.pdf\r\n"
         f"Content-Disposition: attachment; filename=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         f"{damaged}\r\n--{boundary}--\r\n").encode())
    t = ingest(instance, tmp_path, raw)
    assert t["messages"][0]["body"] == "Der Drucker brennt, schon wieder."
    f = files_of(t)["report.pdf"]
    assert stored(instance, f["sha256"]) == pdf and f["size"] == len(pdf)
    detail = log_detail(instance)
    assert "base64 of part 'report.pdf' repaired: 1 stray character skipped; missing padding supplied" in detail
    assert "base64 of part 'text/plain' repaired: missing padding supplied" in detail


def test_raw_8bit_bytes_in_a_quoted_printable_part_are_kept_as_sent():
    """A part labelled quoted-printable that carries raw 8-bit bytes (broken senders do): the bytes come out
    as sent, not as the UTF-8 of their reading in the part's charset (which doubled every such byte)."""
    boundary = "q-1"
    latin1 = "Qualität: très bien".encode("latin-1")
    raw = raw_mail(
        ["From: Alice <alice@client.example>", "To: support@helpdesk.example", "Subject: Raw 8-bit QP",
         "MIME-Version: 1.0", f'Content-Type: multipart/mixed; boundary="{boundary}"'],
        (f"--{boundary}\r\nContent-Type: text/plain; charset=koi8-r\r\n"
         f"Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + "Принтер горит".encode("koi8-r")
        + (f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=iso-8859-1; name=notes.txt\r\n"
           f"Content-Disposition: attachment; filename=notes.txt\r\n"
           f"Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + latin1
        + f"\r\n--{boundary}--\r\n".encode())
    mail = parse(raw)
    assert mail.content.text == "Принтер горит"
    (part,) = [p for p in mail.content.parts if p.filename == "notes.txt"]
    assert part.data == latin1
    # The corpus's case: C3 82 (UTF-8 for Â) raw in a part labelled ISO-8859-1, quoted-printable.
    text = parse(corpus_mail("mikel-mail/attachment_emails__attachment_pdf_non_ascii.eml")).content.text
    assert text.endswith("going wrong here.    Â")
    # An RFC 2231 charset*= parameter on such a part made the standard library's reading raise.
    raw = (b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: 2231\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset*=iso-8859-1''iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           b"caf\xe9 ol\xe9\r\n")
    assert parse(raw).content.text == "café olé"


def test_corpus_base64_with_garbage_after_the_padding():
    # Dovecot's test message: text after the padding is not data, and a stray '?' is skipped.
    mail = parse(corpus_mail("stalwartlabs-mail-parser/thirdparty__002.eml"))
    assert mail.content.text.startswith("päivää\n\nyötä vaan.\n\n")
    assert "base64 of part 'text/plain' repaired: 7 characters after the padding ignored" in mail.notes


# --- point 8: forwarded messages byte-exact ----------------------------------------------------------

INNER = (b"DKIM-Signature: v=1; a=rsa-sha256; d=vendor.example; s=s1;\r\n"
         b"\th=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
         b"\tb=dGVzdA==\r\n"
         b"From: Vendor <noreply@vendor.example>\r\n"
         b"To:   alice@client.example  \r\n"
         b"Subject: Your licence key,\r\n  folded the way the sender folded it\r\n"
         b"Content-Type: text/plain; charset=us-ascii\r\n"
         b"\r\n"
         b"Key: ABCD-1234\r\n"
         b"trailing blanks stay   \r\n")


def forwarding(inner: bytes, cte: str | None = None, eol: bytes = b"\r\n") -> bytes:
    part_headers = b"Content-Type: message/rfc822" + eol + b"Content-Disposition: attachment" + eol
    if cte:
        part_headers += f"Content-Transfer-Encoding: {cte}".encode() + eol
    return raw_mail(
        ["From: Alice <alice@client.example>", "To: support@helpdesk.example", "Subject: Fwd: licence",
         "Message-ID: <fwd@client.example>", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="zz"'],
        b"--zz" + eol + b"Content-Type: text/plain" + eol + eol + b"See the forwarded mail." + eol
        + b"--zz" + eol + part_headers + eol + inner + eol + b"--zz--" + eol, eol)


def test_forwarded_message_is_stored_with_its_original_bytes(instance: Instance, tmp_path: Path):
    t = ingest(instance, tmp_path, forwarding(INNER))
    (eml,) = t["messages"][0]["attachments"]
    assert eml["content_type"] == "message/rfc822" and eml["filename"].endswith(".eml")
    assert stored(instance, eml["sha256"]) == INNER
    assert "flattened" not in log_detail(instance)


@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
def test_an_encoded_forwarded_message_is_stored_decoded(cte: str):
    encoded = base64.encodebytes(INNER) if cte == "base64" else INNER.replace(b"=", b"=3D")
    (part,) = parse(forwarding(encoded, cte)).content.parts
    assert part.data == INNER


def test_forwarded_message_in_lf_mail_keeps_its_lf(tmp_path: Path):
    inner = INNER.replace(b"\r\n", b"\n")
    (part,) = parse(forwarding(inner, eol=b"\n")).content.parts
    assert part.data == inner


def test_forwarded_smime_message_still_verifies(instance: Instance, tmp_path: Path):
    signed = corpus_mail("jstedfast-MimeKit/smime__thunderbird-signed.eml")
    t = ingest(instance, tmp_path, forwarding(signed, eol=b"\n"))
    eml = next(f for f in t["messages"][0]["attachments"] if f["content_type"] == "message/rfc822")
    data = stored(instance, eml["sha256"])
    assert data == signed
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to check the S/MIME signature of the stored message"
    (tmp_path / "stored.eml").write_bytes(data)
    check = subprocess.run([openssl, "smime", "-verify", "-noverify", "-in", str(tmp_path / "stored.eml"),
                            "-out", str(tmp_path / "content")], capture_output=True)
    assert check.returncode == 0 and b"Verification successful" in check.stderr, check.stderr


def test_corpus_forwarded_messages_are_slices_of_the_raw_mail():
    # Every message/* part of every corpus message that holds one is stored as bytes the raw mail has,
    # and reads (parsed again) as the message the parser saw.
    seen = 0
    for path in sorted(CORPUS.rglob("*.eml")):
        raw = path.read_bytes()
        if b"message/rfc822" not in raw.lower():
            continue
        mail = parse(raw)
        for part in mail.content.parts:
            if part.content_type != "message/rfc822" or not part.data:
                continue
            seen += 1
            sent_encoded = b"".join(base64.encodebytes(part.data).split()) in b"".join(raw.split())
            assert part.data in raw or sent_encoded, path
            assert not any("flattened" in n for n in mail.notes), (path, mail.notes)
    assert seen >= 100, f"expected the corpus's forwarded messages, found {seen} (is {CORPUS} complete?)"


# --- point 9: what clients send, macros, signatures --------------------------------------------------

def cfb(names: list[tuple[str, int]], filler: bytes = b"") -> bytes:
    """A minimal compound file (OLE2, v3, 512-byte sectors): the root, then ``names`` as (name, type)
    directory entries (1 storage, 2 stream; all empty), then ``filler`` as unreferenced sectors."""
    end, free, nostream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFF
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\0" * 6 + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0))
    header += struct.pack("<I", 0) + struct.pack("<I", free) * 108
    fat = struct.pack("<II", 0xFFFFFFFD, end) + struct.pack("<I", free) * 126

    def entry(name: str, kind: int, child: int = nostream, right: int = nostream) -> bytes:
        encoded = (name.encode("utf-16-le") + b"\0\0").ljust(64, b"\0")
        return (encoded + struct.pack("<HBBIII", len(name) * 2 + 2, kind, 1, nostream, right, child)
                + b"\0" * 36 + struct.pack("<IQ", end, 0))

    entries = [entry("Root Entry", 5, child=1 if names else nostream)]
    entries += [entry(n, k, right=i + 2 if i + 1 < len(names) else nostream) for i, (n, k) in enumerate(names)]
    directory = b"".join(entries).ljust(512 * ((len(entries) + 3) // 4), b"\0")
    return header + fat + directory + filler


def office_zip(parts: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return buf.getvalue()


def ooxml(kind: str, macro: bool = False, macro_type: bool = False) -> bytes:
    main = {"word": "word/document.xml", "xl": "xl/workbook.xml", "ppt": "ppt/presentation.xml"}[kind]
    ctype = {"word": "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
             "xl": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
             "ppt": "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"}[kind]
    if macro_type:
        ctype = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
    parts: dict[str, bytes | str] = {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/'
                               f'2006/content-types"><Override PartName="/{main}" ContentType="{ctype}"/></Types>',
        "_rels/.rels": "<Relationships/>", main: "<doc/>"}
    if macro:
        parts[f"{kind}/vbaProject.bin"] = cfb([("VBA", 1), ("_VBA_PROJECT", 2)])
    return office_zip(parts)


def odf(kind: str, macro: bool = False) -> bytes:
    parts: dict[str, bytes | str] = {"mimetype": f"application/vnd.oasis.opendocument.{kind}",
                                     "META-INF/manifest.xml": "<manifest/>", "content.xml": "<office/>"}
    if macro:
        parts["Basic/Standard/Module1.xml"] = "<script:module>Sub AutoOpen</script:module>"
    return office_zip(parts)


def iso_media(brand: bytes) -> bytes:
    return struct.pack(">I", 24) + b"ftyp" + brand + b"\0\0\0\0" + brand + b"mif1" + struct.pack(">I", 8) + b"free"


CLIENT_FILES: dict[str, bytes] = {
    "letter.doc": cfb([("WordDocument", 2), ("1Table", 2)]),
    "letter.docx": ooxml("word"),
    "sheet.xls": cfb([("Workbook", 2)]),
    "sheet.xlsx": ooxml("xl"),
    "slides.ppt": cfb([("PowerPoint Document", 2)]),
    "slides.pptx": ooxml("ppt"),
    "letter.odt": odf("text"),
    "sheet.ods": odf("spreadsheet"),
    "slides.odp": odf("presentation"),
    "letter.rtf": b"{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}} Hello}",
    "shot.png": tiny_png(),
    "photo.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9",
    "photo.jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9\x00",
    "anim.gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    "shot.webp": b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00",
    "photo.heic": iso_media(b"heic"),
    "scan.bmp": b"BM" + struct.pack("<IHHI", 58, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, 4,
                                                                          2835, 2835, 0, 0) + b"\0\0\xff\0",
    "scan.tif": b"II*\x00\x08\x00\x00\x00\x00\x00",
    "scan.tiff": b"MM\x00*\x00\x00\x00\x08\x00\x00",
    "invoice.pdf": b"%PDF-1.4\n%%EOF\n",
    "notes.txt": b"plain words\n",
    "app.log": b"2026-11-24 12:00:00 ERROR something broke\n",
    "data.csv": b"a,b\n1,2\n",
    "data.json": b'{"error": "timeout", "code": 504}\n',
    "data.xml": b'<?xml version="1.0"?><order id="42"/>\n',
    "logs.zip": office_zip({"a.log": "x\n"}),
    "logs.7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 24,
    "logs.gz": gzip.compress(b"log line\n"),
    "original.eml": b"From: a@b.example\r\nSubject: old\r\n\r\nbody\r\n",
    "outlook.msg": cfb([("__substg1.0_0037001F", 2), ("__properties_version1.0", 2)]),
    "screen.mp4": iso_media(b"isom"),
    "screen.mov": struct.pack(">I", 20) + b"ftypqt  \0\0\0\0qt  " + struct.pack(">I", 8) + b"wide",
}


def test_default_allow_list_is_what_support_mail_carries():
    assert set(AttachmentSettings().allowed_extensions) == {
        "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf", "png", "jpg", "jpeg", "gif",
        "webp", "heic", "bmp", "tif", "tiff", "pdf", "txt", "log", "csv", "json", "xml", "zip", "7z", "gz",
        "eml", "msg", "mp4", "mov"}
    assert {name.rpartition(".")[2] for name in CLIENT_FILES} == set(AttachmentSettings().allowed_extensions)


def test_files_clients_send_are_kept_byte_exact(instance: Instance, tmp_path: Path):
    msg = make_mail(subject="Everything attached")
    for name, data in CLIENT_FILES.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    t = ingest(instance, tmp_path, bytes(msg))
    files = files_of(t)
    assert sorted(files) == sorted(CLIENT_FILES), log_detail(instance)
    for name, data in CLIENT_FILES.items():
        assert stored(instance, files[name]["sha256"]) == data, name


MACRO_FILES: dict[str, bytes] = {
    "report.docm": ooxml("word", macro=True),
    "report.docx": ooxml("word", macro=True),                 # a .docm renamed
    "budget.xlsx": ooxml("xl", macro_type=True),              # declared macro-enabled
    "deck.pptm": ooxml("ppt", macro=True),
    "letter.doc": cfb([("WordDocument", 2), ("Macros", 1), ("VBA", 1), ("_VBA_PROJECT", 2)]),
    "sheet.xls": cfb([("Workbook", 2), ("_VBA_PROJECT_CUR", 1), ("VBA", 1)]),
    "letter.odt": odf("text", macro=True),
}


def test_macro_bearing_office_files_are_refused_by_content(instance: Instance, tmp_path: Path):
    msg = make_mail(subject="Macros")
    for name, data in MACRO_FILES.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    msg.add_attachment(CLIENT_FILES["letter.docx"], maintype="application", subtype="octet-stream",
                       filename="clean.docx")
    t = ingest(instance, tmp_path, bytes(msg))
    assert list(files_of(t)) == ["clean.docx"]
    detail = log_detail(instance)
    for name in MACRO_FILES:
        line = next(x for x in detail.splitlines() if f"dropped attachment {name!r}" in x)
        assert "an office document with macros" in line, line


def test_macro_check_reads_directory_entries_not_stray_text():
    # The names, terminated as in an entry, in the document's own text: off an entry boundary, and on one
    # but without an entry's name length and type after them.
    words = b"".join(n.encode("utf-16-le") + b"\0\0" for n in ("_VBA_PROJECT", "VBA"))
    filler = (b"\0" * 10 + words).ljust(128, b"\0") + words.ljust(128, b"\x07")
    assert macros(cfb([("WordDocument", 2)], filler=filler), "application/msword") is None
    assert macros(cfb([("VBA", 1)]), "application/CDFV2") == "a VBA project (VBA in the compound file)"
    assert macros(b"PK\x03\x04 not really a zip", "application/zip") is None
    assert macros(office_zip({"project/vbaProject.bin": "x"}), "application/zip") is None  # a plain zip


SMIME = "jstedfast-MimeKit/smime__thunderbird-signed.eml"
PGP = "django-helpdesk/pgp.eml"


@pytest.mark.parametrize(("name", "kind", "ctype", "filename"), [
    (SMIME, "smime", "application/pkcs7-signature", "smime.p7s"),
    (PGP, "pgp", "application/pgp-signature", "signature.asc"),
])
def test_signature_parts_are_recorded_as_signatures(instance: Instance, tmp_path: Path, name: str, kind: str,
                                                    ctype: str, filename: str):
    raw = corpus_mail(name)
    t = ingest(instance, tmp_path, raw)
    (sig,) = t["messages"][0]["signatures"]
    signature_part = next(p for p in message_from_bytes(raw).walk() if p.get_content_type() == ctype)
    assert sig == {"kind": kind, "content_type": ctype, "filename": filename,
                   "size": len(signature_part.get_payload(decode=True))}
    assert filename not in files_of(t)
    assert "dropped attachment" not in log_detail(instance)
    shown = instance.cli("ticket", "show", t["tid"]).stdout.decode()
    assert f"[signature] {kind} {filename} ({ctype}," in shown


def test_an_untyped_p7s_in_a_signed_mail_is_a_signature_too():
    msg = make_mail(subject="Signed by an old client")
    msg.make_mixed()
    msg.add_attachment(b"0\x82\x05\x00" + b"\x01" * 60, maintype="application", subtype="octet-stream",
                       filename="smime.p7s")
    msg.add_attachment(b"0\x82 not a signature", maintype="application", subtype="octet-stream", filename="cert.p7c")
    content = parse(bytes(msg)).content
    assert [(s.kind, s.filename, s.size) for s in content.signatures] == [("smime", "smime.p7s", 64)]
    assert [p.filename for p in content.parts] == ["cert.p7c"]


def test_signed_mail_keeps_its_real_attachment(instance: Instance, tmp_path: Path):
    t = ingest(instance, tmp_path, corpus_mail(SMIME))
    jpg = files_of(t)["signed.jpg"]
    assert jpg["content_type"] == "image/jpeg"
    assert hashlib.sha256(stored(instance, jpg["sha256"])).hexdigest() == jpg["sha256"]
    assert stored(instance, jpg["sha256"]).startswith(b"\xff\xd8\xff")


def test_a_database_of_the_previous_version_gains_the_signatures_table(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, sql in migration_files():
        if number > 5:
            break
        conn.executescript(sql.read_text())
    conn.execute("PRAGMA user_version=5")
    conn.close()
    upgraded = connect_sync(path)
    columns = [r[1] for r in upgraded.execute("PRAGMA table_info(message_signatures)")]
    upgraded.close()
    assert columns == ["id", "message_id", "kind", "content_type", "filename", "size"]


def test_a_forwarded_message_libmagic_sees_as_text_stays_an_eml():
    policy = AttachmentSettings().policy
    forwarded = Part(filename=None, content_type="message/rfc822", data=INNER)
    named_txt = Part(filename="notes.txt", content_type="message/rfc822", data=b"just some notes\n")
    assert judge([forwarded, named_txt], policy) == []
    assert (forwarded.filename, forwarded.content_type) == ("attachment_1.eml", "message/rfc822")
    assert (named_txt.filename, named_txt.content_type) == ("notes.txt", "text/plain")


def test_a_staff_members_signed_reply_keeps_its_signature(instance: Instance, tmp_path: Path):
    first = make_mail(subject="Printer", message_id="<first@client.example>")
    t = ingest(instance, tmp_path, bytes(first))
    instance.cli("staff", "add", "sam@helpdesk.example", "--name", "Sam Staff")
    staff_id = instance.query("SELECT id FROM staff WHERE email = 'sam@helpdesk.example'")[0]["id"]
    signer = Signer(load_or_create_secret(config.load(instance.config).secret_path))
    reply = EmailMessage()
    reply["From"] = "Sam Staff <sam@helpdesk.example>"
    reply["To"] = with_tag("support@helpdesk.example", signer.reply_tag(t["tid"], staff_id))
    reply["Subject"] = f"Re: [Ticket #{t['tid']}] Printer"
    reply["Message-ID"] = "<answer@helpdesk.example>"
    reply["In-Reply-To"] = "<first@client.example>"
    reply.set_content("Turn it off and on again.\n")
    reply.make_mixed()
    reply.add_attachment(b"-----BEGIN PGP SIGNATURE-----\n\niQEz\n-----END PGP SIGNATURE-----\n",
                         maintype="application", subtype="pgp-signature", filename="signature.asc")
    path = tmp_path / "answer.eml"
    path.write_bytes(bytes(reply))
    assert instance.cli_json("ingest", str(path))["items"][0]["outcome"] == "reply"
    answer = instance.cli_json("ticket", "show", t["tid"])["messages"][1]
    assert answer["kind"] == "staff_reply" and answer["body"].startswith("Turn it off")
    assert [(s["kind"], s["filename"]) for s in answer["signatures"]] == [("pgp", "signature.asc")]
    assert answer["attachments"] == []


def test_blank_means_whitespace_and_format_characters_only():
    invisible = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF
                 and (chr(c).isspace() or unicodedata.category(chr(c)) == "Cf")]
    assert _blank("".join(invisible))
    assert not any(_blank(f"\u200b {ch} \ufeff") for ch in ("a", "0", ".", "\u00e9", "\u4e00", "\U0001f600"))
