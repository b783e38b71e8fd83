"""Bodies and attachments as stored: HTML-only mail, charsets, attachment names and bytes on disk."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage

from tests.helpers import Instance, make_mail


def _ingest_one(instance: Instance, tmp_path, raw: bytes) -> dict:
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    out = instance.cli_json("ingest", str(path))
    assert out["items"][0]["outcome"] == "new_ticket", out
    return instance.cli_json("ticket", "show", out["items"][0]["ticket"])


def test_attachments_are_stored_content_addressed_with_safe_names(instance: Instance, tmp_path):
    msg = make_mail(subject="Logs attached")
    pdf = b"%PDF-1.4 fake but fine\n"
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="../../etc/passwd.pdf")
    msg.add_attachment(b"line\n", maintype="text", subtype="plain", filename="\u202egnp.exe")
    msg.add_attachment(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png")
    t = _ingest_one(instance, tmp_path, bytes(msg))
    files = t["messages"][0]["attachments"]
    assert [f["filename"] for f in files] == ["passwd.pdf", "gnp.exe", "attachment_1.png"]
    assert files[0]["sha256"] == hashlib.sha256(pdf).hexdigest() and files[0]["size"] == len(pdf)
    stored = instance.state / "attachments" / files[0]["sha256"][:2] / files[0]["sha256"]
    assert stored.read_bytes() == pdf
    # Nothing was written outside the attachments store.
    written = {p.name for p in instance.state.rglob("*") if p.is_file()}
    assert "passwd.pdf" not in written and "passwd" not in written
    assert t["messages"][0]["body"].startswith("Hello,")


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
