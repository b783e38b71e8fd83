"""Bodies and attachments as stored: HTML-only mail, charsets, attachment names and bytes on disk."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from email.message import EmailMessage

from tests.helpers import Instance, make_mail


def _ingest_one(instance: Instance, tmp_path, raw: bytes) -> dict:
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    out = instance.cli_json("ingest", str(path))
    assert out["items"][0]["outcome"] == "new_ticket", out
    return instance.cli_json("ticket", "show", out["items"][0]["ticket"])


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def import_log_detail(instance: Instance) -> str:
    row = instance.cli_json("import-log")["items"][0]
    return json.loads(instance.cli("import-log", "show", str(row["id"]), "--json").stdout)["detail"]


def test_attachments_are_stored_content_addressed_with_safe_names(instance: Instance, tmp_path):
    msg = make_mail(subject="Logs attached")
    pdf = b"%PDF-1.4 fake but fine\n"
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="../../etc/passwd.pdf")
    msg.add_attachment(b"line\n", maintype="text", subtype="plain", filename="\u202egnp.exe")
    msg.add_attachment(tiny_png(), maintype="image", subtype="png")
    msg.add_attachment(b"col1,col2\n1,2\n", maintype="text", subtype="csv", filename="..report.csv")
    t = _ingest_one(instance, tmp_path, bytes(msg))
    files = t["messages"][0]["attachments"]
    assert [f["filename"] for f in files] == ["passwd.pdf", "attachment_1.png", "report.csv"]
    assert [f["content_type"] for f in files] == ["application/pdf", "image/png", "text/plain"]
    assert files[0]["sha256"] == hashlib.sha256(pdf).hexdigest() and files[0]["size"] == len(pdf)
    stored = instance.state / "attachments" / files[0]["sha256"][:2] / files[0]["sha256"]
    assert stored.read_bytes() == pdf
    # Nothing was written outside the attachments store, and nothing under a name from the mail.
    written = [p for p in instance.state.rglob("*") if p.is_file()]
    assert all(p.parent.parent.name == "attachments" or p.parent == instance.state for p in written), written
    assert t["messages"][0]["body"].startswith("Hello,")
    # The refused one is named in the import log, not dropped silently.
    assert "dropped attachment 'gnp.exe'" in import_log_detail(instance)


def test_executable_in_disguise_and_unknown_content_are_dropped(instance: Instance, tmp_path):
    msg = make_mail(subject="Invoice")
    msg.add_attachment(b"MZ\x90\x00" + b"\x00" * 400, maintype="application", subtype="pdf", filename="invoice.pdf")
    msg.add_attachment(b"#!/bin/sh\nrm -rf /\n", maintype="text", subtype="plain", filename="notes.txt")
    msg.add_attachment(bytes(range(256)) * 4, maintype="application", subtype="octet-stream")
    t = _ingest_one(instance, tmp_path, bytes(msg))
    assert t["messages"][0]["attachments"] == []
    detail = import_log_detail(instance)
    assert "'invoice.pdf'" in detail and "executable" in detail
    assert "'notes.txt'" in detail
    assert "'attachment_1.unknown'" in detail
    assert list((instance.state / "attachments").rglob("*")) == [] or all(
        p.is_dir() for p in (instance.state / "attachments").rglob("*"))


def test_size_limits_per_file_and_per_message(tmp_path):
    inst = Instance(tmp_path, extra_config='\n[attachments]\nmax_file_size = "4kB"\nmax_total_size = "5kB"\n')
    msg = make_mail(subject="Big logs")
    for i, size in enumerate((5000, 3000, 3000)):
        msg.add_attachment(b"x" * size, maintype="text", subtype="plain", filename=f"log{i}.txt")
    t = _ingest_one(inst, tmp_path, bytes(msg))
    assert [f["filename"] for f in t["messages"][0]["attachments"]] == ["log1.txt"]
    detail = import_log_detail(inst)
    assert "'log0.txt'" in detail and "per file" in detail
    assert "'log2.txt'" in detail and "exceed" in detail


def test_inline_images_forwarded_mail_and_winmail_dat_are_kept(instance: Instance, tmp_path):
    msg = make_mail(subject="Screenshot")
    msg.add_alternative('<p>See <img src="cid:shot1@client.example"></p>', subtype="html")
    html_part = msg.get_payload()[1]
    html_part.add_related(tiny_png(), maintype="image", subtype="png", cid="<shot1@client.example>")
    inner = make_mail(subject="The original")
    msg.make_mixed()
    msg.attach(_rfc822(inner))
    msg.add_attachment(b"\x78\x9f\x3e\x22" + b"\x00" * 64, maintype="application", subtype="ms-tnef",
                       filename="winmail.dat")
    t = _ingest_one(instance, tmp_path, bytes(msg))
    files = {f["filename"]: f for f in t["messages"][0]["attachments"]}
    png = next(f for f in files.values() if f["content_type"] == "image/png")
    assert png["content_id"] == "shot1@client.example" and png["inline"]
    eml = next(f for name, f in files.items() if name.endswith(".eml"))
    assert eml["content_type"] == "message/rfc822"
    assert "winmail.dat" in files


def _rfc822(inner):
    from email.message import EmailMessage

    part = EmailMessage()
    part.set_content(inner)
    return part


def test_html_only_mail_gets_a_text_rendering(instance: Instance, tmp_path):
    msg = EmailMessage()
    msg["From"] = "bob@client.example"
    msg["To"] = "support@helpdesk.example"
    msg["Subject"] = "HTML only"
    msg.set_content("<html><head><style>p{}</style><script>alert(1)</script></head>"
                    "<body><p>Line one &amp; more</p><p>Line two</p></body></html>", subtype="html")
    body = _ingest_one(instance, tmp_path, bytes(msg))["messages"][0]["body"]
    assert "Line one & more" in body and "Line two" in body
    assert "alert" not in body and "<p>" not in body


def test_wrongly_labelled_latin1_body_is_not_lost(instance: Instance, tmp_path):
    raw = (b"From: c@client.example\r\nTo: support@helpdesk.example\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\nCaf\xe9 cr\xe8me \x80 5\r\n")
    t = _ingest_one(instance, tmp_path, raw)
    assert t["subject"] == "Café"
    assert t["messages"][0]["body"].strip() == "Café crème € 5"


def test_priority_header_sets_priority(instance: Instance, tmp_path):
    msg = make_mail(subject="Urgent")
    msg["X-Priority"] = "1 (Highest)"
    assert _ingest_one(instance, tmp_path, bytes(msg))["priority"] == "High"


def test_active_content_and_a_false_tnef_label_are_dropped(instance: Instance, tmp_path):
    msg = make_mail(subject="Tricks")
    msg.add_attachment(b"<html><script>alert(1)</script></html>", maintype="application", subtype="pdf",
                       filename="invoice.pdf")
    msg.add_attachment(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                       maintype="image", subtype="png", filename="logo.png")
    msg.add_attachment(b"<html><body><script>x()</script></body></html>", maintype="application",
                       subtype="vnd.ms-tnef", filename="evil.hta")
    msg.add_attachment(b"%PDF-1.4 fine\n", maintype="application", subtype="pdf", filename="a\u2028b\u061c.pdf")
    t = _ingest_one(instance, tmp_path, bytes(msg))
    (kept,) = [f["filename"] for f in t["messages"][0]["attachments"]]
    assert kept.startswith("a") and kept.endswith("b.pdf") and "\u2028" not in kept and "\u061c" not in kept
    detail = import_log_detail(instance)
    for name in ("invoice.pdf", "logo.png", "evil.hta"):
        assert f"'{name}'" in detail


def test_names_lose_controls_are_composed_capped_and_numbered(instance: Instance, tmp_path):
    msg = make_mail(subject="Names")
    pdf = b"%PDF-1.4 fine\n"
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="re\x07po\x1brt\x7f.pdf")
    msg.add_attachment(pdf + b"2", maintype="application", subtype="pdf", filename="Re\u0301sume\u0301.pdf")
    msg.add_attachment(pdf + b"3", maintype="application", subtype="pdf", filename="a" * 300 + ".pdf")
    msg.add_attachment(tiny_png(), maintype="image", subtype="png")
    msg.add_attachment(tiny_png() + b"\x00", maintype="image", subtype="png")
    msg.add_attachment(b"\x78\x9f\x3e\x22" + b"\x00" * 64, maintype="application", subtype="ms-tnef",
                       filename="evil.exe")
    t = _ingest_one(instance, tmp_path, bytes(msg))
    names = [f["filename"] for f in t["messages"][0]["attachments"]]
    assert names[0] == "report.pdf"
    assert names[1] == "R\u00e9sum\u00e9.pdf"                    # NFC: one code point per letter
    assert names[2].endswith(".pdf") and names[2].startswith("aaa") and len(names[2]) <= 255
    assert names[3:5] == ["attachment_1.png", "attachment_2.png"]
    assert names[5] == "evil.dat"  # TNEF passes the allow-list, so it never keeps a name it chose itself
    assert len(names) == 6


def test_allowed_extensions_come_from_the_config(tmp_path):
    inst = Instance(tmp_path, extra_config='\n[attachments]\nallowed_extensions = ["PDF", "docx"]\n')
    msg = make_mail(subject="Allow list")
    msg.add_attachment(b"%PDF-1.4 fine\n", maintype="application", subtype="pdf", filename="a.PDF")
    msg.add_attachment(b"PK\x03\x04" + b"\x00" * 100, maintype="application", subtype="octet-stream",
                       filename="b.docx")
    msg.add_attachment(b"plain words\n", maintype="text", subtype="plain", filename="c.txt")
    msg.add_attachment(tiny_png(), maintype="image", subtype="png", filename="d.png")
    t = _ingest_one(inst, tmp_path, bytes(msg))
    assert [f["filename"] for f in t["messages"][0]["attachments"]] == ["a.PDF", "b.docx"]
    detail = import_log_detail(inst)
    assert "'c.txt'" in detail and "'d.png'" in detail and "not an allowed file type (docx, pdf)" in detail
