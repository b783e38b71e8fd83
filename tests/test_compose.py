"""The hand-written composer, checked by parsing its output back with the standard library."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage

from maild.notify.compose import Attachment, Outgoing, compose


def build(**overrides: object) -> tuple[bytes, EmailMessage]:
    values: dict = {
        "from_name": "Sam Stäff, \"Support\"", "from_addr": "support@helpdesk.example",
        "to": [("Ålice\r\nBcc: evil@x.example", "alice@client.example")],
        "cc": [("", "bob@partner.example"), ("Carl, Jr.", "carl@partner.example")],
        "reply_to": "support+t123456-abcdefghijklmnop@helpdesk.example",
        "subject": "Re: [Ticket #123456] Drucker brennt — ÜBER alles " + "lang " * 30,
        "text": "Hallo Ålice,\n\nline with trailing space \nFrom the start\n" + "x" * 1200 + "\n= sign\n",
        "message_id": "<t1.abc@helpdesk.example>", "date": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "in_reply_to": "<m1@client.example>",
        "references": [f"<{'r' * 60}.{i}@client.example>" for i in range(8)],
        "thread_index": "AdlH8l1vvQ4Ed+U6QrKp7M5kUAo8ZYhoF7fg", "thread_topic": "Drucker brennt",
        "html": "<p>Hallo <strong>Ålice</strong></p>",
        "attachments": [Attachment("Rechnung März.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256))),
                        Attachment('we"ird.txt', "text/plain", b"plain\r\n")],
        "loop_marker": "ticketd@helpdesk.example",
    }
    values.update(overrides)
    raw = compose(Outgoing(**values))
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return raw, msg


def test_headers_round_trip():
    raw, msg = build()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")                       # CRLF everywhere
    assert not any(line.startswith(b"Bcc:") for line in head.split(b"\r\n"))  # no header injection
    assert msg["From"].addresses[0].display_name == 'Sam Stäff, "Support"'
    assert msg["From"].addresses[0].addr_spec == "support@helpdesk.example"
    assert [a.addr_spec for a in msg["To"].addresses] == ["alice@client.example"]
    assert msg["To"].addresses[0].display_name == "Ålice Bcc: evil@x.example"
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("", "bob@partner.example"), ("Carl, Jr.", "carl@partner.example")]
    assert str(msg["Subject"]) == "Re: [Ticket #123456] Drucker brennt — ÜBER alles " + " ".join(["lang"] * 30)
    assert msg["References"].split() == [f"<{'r' * 60}.{i}@client.example>" for i in range(8)]
    assert msg["In-Reply-To"] == "<m1@client.example>" and msg["Message-ID"] == "<t1.abc@helpdesk.example>"
    assert msg["Reply-To"].addresses[0].addr_spec == "support+t123456-abcdefghijklmnop@helpdesk.example"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Loop"] == "ticketd@helpdesk.example" and msg["Thread-Topic"] == "Drucker brennt"
    assert msg["Date"].datetime == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert not msg.defects


def test_bodies_and_attachments_round_trip():
    _, msg = build()
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(("plain",)).get_content()
    assert text.replace("\r\n", "\n") == ("Hallo Ålice,\n\nline with trailing space \nFrom the start\n"
                                          + "x" * 1200 + "\n= sign\n")
    assert msg.get_body(("html",)).get_content().strip() == "<p>Hallo <strong>Ålice</strong></p>"
    files = [(a.get_filename(), a.get_content_type(), a.get_content()) for a in msg.iter_attachments()]
    files = [(n, t, c.replace("\r\n", "\n") if isinstance(c, str) else c) for n, t, c in files]
    assert files == [("Rechnung März.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256))),
                     ('we"ird.txt', "text/plain", "plain\n")]


def test_plain_person_mail():
    raw, msg = build(html=None, attachments=(), automatic=False, cc=(), text="Just ASCII.\n", thread_index=None)
    assert msg.get_content_type() == "text/plain" and msg["Auto-Submitted"] is None
    assert b"Content-Transfer-Encoding: 7bit" in raw and msg.get_content().replace("\r\n", "\n") == "Just ASCII.\n"
    assert msg["Thread-Index"] is None


def test_addresses_and_ids_that_cannot_go_in_ascii_headers():
    from maild.notify.compose import ascii_address, message_ids

    assert ascii_address("mary@exämple.net") == "mary@xn--exmple-cua.net"
    assert ascii_address("Mary@Example.NET") == "Mary@example.net"
    assert ascii_address("märy@example.net") is None          # needs SMTPUTF8: not sent
    assert ascii_address("no-at-sign") is None and ascii_address("a b@example.net") is None
    assert message_ids(["<ok.1@x>", "<bäd@x>", "no-brackets@x", "<a b@x>", ""]) == ["<ok.1@x>"]
    raw, msg = build(to=[("Märy", "mary@xn--exmple-cua.net")], in_reply_to="<bäd@x>",
                     references=["<ok.1@x>", "<bäd@x>"])
    assert raw.isascii() and msg["In-Reply-To"] is None and msg["References"] == "<ok.1@x>"


def test_long_values_stay_within_line_limits_and_round_trip():
    long_word = "x" * 1200
    name = "Jörg " + "Ä" * 600
    filename = "報告" * 60 + ".pdf"
    raw, msg = build(subject=f"Re: {long_word} end", to=[(name, "joerg@client.example")],
                     references=[f"<{'r' * 1500}@client.example>", "<ok@client.example>"],
                     in_reply_to=f"<{'r' * 1500}@client.example>",
                     attachments=[Attachment(filename, "application/pdf", b"%PDF")])
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78 * 2   # folded; far under 998
    assert str(msg["Subject"]) == f"Re: {long_word} end"
    # (The standard library's address parser puts a space between adjacent encoded words of a display name,
    # against RFC 2047 6.2; decode_header joins them as mail clients do.)
    to_value = raw.split(b"\r\nTo: ", 1)[1].split(b"\r\nCc:", 1)[0].decode().replace("\r\n ", " ")
    assert str(make_header(decode_header(to_value))) == f"{name} <joerg@client.example>"
    assert msg["References"] == "<ok@client.example>" and msg["In-Reply-To"] is None
    (attached,) = list(msg.iter_attachments())
    assert attached.get_filename() == filename


def test_no_deliverable_to_address_is_an_empty_group():
    raw, msg = build(to=[])
    assert b"To: undisclosed-recipients:;" in raw and msg["To"].addresses == ()
