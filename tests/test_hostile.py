"""Hostile input at the door and in the parser: it is stored or refused with a clear answer, never a
crash, never a stall that holds up everybody else's mail."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TICKETD, Instance, make_mail


def smtp_raw(port: int, lines: list[bytes]) -> list[bytes]:
    """Talk SMTP byte by byte (smtplib cannot send 8-bit commands); return the server's replies."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            text = b""
            while True:
                line = f.readline()
                text += line
                if len(line) < 4 or line[3:4] != b"-":
                    return text

        reply()  # greeting
        for line in lines:
            s.sendall(line + b"\r\n")
            replies.append(reply())
    return replies


def test_8bit_envelope_sender_is_stored_and_does_not_fail_others(daemon: Instance):
    body = make_mail(subject="8-bit envelope").as_bytes(policy=make_mail().policy.clone(linesep="\r\n"))
    replies = smtp_raw(daemon.smtp_port, [
        b"EHLO client.example",
        b"MAIL FROM:<b\xffd\xc3@client.example>",
        b"RCPT TO:<support@helpdesk.example>",
        b"DATA",
        body + b"\r\n.",
        b"QUIT",
    ])
    assert replies[1].startswith(b"250") and replies[4].startswith(b"250"), replies
    rows = daemon.wait_outcomes(1)
    assert rows[0]["outcome"] == "new_ticket"
    stored = daemon.query("SELECT envelope_from FROM inbound")[0]["envelope_from"]
    assert stored.startswith("b") and stored.endswith("@client.example")


def test_nul_in_an_envelope_address_is_refused_with_501(daemon: Instance):
    from maild.receive import codes

    replies = smtp_raw(daemon.smtp_port, [
        b"EHLO client.example",
        b"MAIL FROM:<a\x00b@client.example>",
        b"MAIL FROM:<alice@client.example>",
        b"RCPT TO:<support\x00@helpdesk.example>",
        b"RCPT TO:<support@helpdesk.example>",
        b"QUIT",
    ])
    assert replies[1].decode().strip() == codes.S501_NUL_IN_ADDRESS
    assert replies[2].startswith(b"250")
    assert replies[3].decode().strip() == codes.S501_NUL_IN_ADDRESS
    assert replies[4].startswith(b"250")


def test_pipe_with_8bit_sender_variable(instance: Instance):
    env = {k.encode(): v.encode() for k, v in os.environ.items()}
    env[b"SENDER"] = b"bad\xff@client.example"
    proc = subprocess.run([*TICKETD, "--config", str(instance.config), "pipe"], input=make_mail().as_bytes(),
                          env=env, capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert instance.cli_json("process")["outcomes"] == {"new_ticket": 1}


def test_config_that_is_not_utf8(instance: Instance):
    instance.config.write_bytes(instance.config.read_bytes() + b"\n# caf\xe9\n")
    proc = instance.cli("pipe", input=b"x", check=False)
    assert proc.returncode == 78 and b"UTF-8" in proc.stderr and b"Traceback" not in proc.stderr


HOSTILE = {
    # Each of these once took minutes to hours to parse (quadratic in the stdlib or in our code).
    "40k alternative parts": lambda: (
        b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: alt\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative; boundary=B\r\n\r\n"
        + b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(40000)) + b"--B--\r\n"),
    "unterminated encoded words": lambda: (
        b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: "
        + b"\r\n ".join([b"=?utf-8?q?a" * 50] * 1000) + b"\r\n\r\nbody\r\n"),
    "unterminated html comments": lambda: (
        b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: h\r\n"
        b"Content-Type: text/html\r\n\r\n<p>hi" + b"<!--" * 250000 + b"\r\n"),
    "unclosed tags": lambda: (
        b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: h\r\n"
        b"Content-Type: text/html\r\n\r\n" + b"<" * 1000000 + b"\r\n"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_mail_parses_in_bounded_time(name, tmp_path):
    """Not a speed goal: a guard against a stall. Each finishes in about a second; the quadratic versions
    took minutes, far past the generous timeout."""
    path = tmp_path / "m.eml"
    path.write_bytes(HOSTILE[name]())
    code = ("import sys; from maild.pipeline.parse import parse; "
            "m = parse(open(sys.argv[1], 'rb').read()); print(len(m.content.text))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _msg(headers: bytes, body: bytes) -> bytes:
    return headers + b"\r\n" + body


def _ingest_all(instance: Instance, tmp_path, mails: dict[str, bytes]) -> dict[str, dict]:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name, raw in mails.items():
        (folder / f"{name}.eml").write_bytes(raw)
    out = instance.cli_json("ingest", "--department", "Sales", str(folder))
    return {item["source_ref"].rsplit("/", 1)[-1][:-4]: item for item in out["items"]}


def _nested(depth: int, leaf: bytes, level: int = 0) -> bytes:
    """A MIME entity ``depth`` multiparts deep with ``leaf`` at the bottom."""
    if level == depth:
        return leaf
    return (b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
            + _nested(depth, leaf, level + 1) + b"\r\n--b%d--\r\n" % level)


def test_malformed_mail_is_stored_with_an_outcome_never_failed(instance: Instance, tmp_path):
    leaf = b"Content-Type: text/plain\r\n\r\ninner text\r\n"
    many = b"".join(b"--M\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(1000)) + b"--M--\r\n"
    mails = {
        "nul": _msg(b"From: a@client.example\x00\r\nTo: support@helpdesk.example\r\nSubject: n\x00ul\r\n",
                    b"body \x00 with NUL\r\n"),
        "deep40": b"From: a@client.example\r\nSubject: deep 40\r\nMIME-Version: 1.0\r\n" + _nested(40, leaf),
        "deep100": b"From: a@client.example\r\nSubject: deep 100\r\nMIME-Version: 1.0\r\n" + _nested(100, leaf),
        "many": _msg(b"From: a@client.example\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
                     b"Content-Type: multipart/mixed; boundary=M\r\n", many),
        "base64": _msg(b"From: a@client.example\r\nSubject: b64\r\nContent-Transfer-Encoding: base64\r\n",
                       b"SGVsbG8g!!!d29y===bGQ\r\n"),
        "qp": _msg(b"From: a@client.example\r\nSubject: qp\r\nContent-Transfer-Encoding: quoted-printable\r\n",
                   b"caf=E9 =ZZ broken=\r\n=\r\n"),
        "encoded_words": _msg(b"From: =?utf-8?b?!!!?= <a@client.example>\r\nSubject: =?x-unknown?q?caf=E9?= "
                              b"=?utf-8?q?unterminated\r\n", b"hi\r\n"),
        "adjacent_words": _msg(b"From: =?iso-8859-1?q?Ren=E9?= <r@client.example>\r\n"
                               b"Subject: =?utf-8?B?w6k=?==?utf-8?Q?t=C3=A9?=\r\n", b"hi\r\n"),
        "8bit_utf8": _msg("From: José <j@client.example>\r\nSubject: café 8bit\r\n".encode(), b"hi\r\n"),
        "8bit_latin1": _msg("From: José <k@client.example>\r\nSubject: café 8bit\r\n".encode("latin-1"),
                            b"hi\r\n"),
        "no_from": _msg(b"Subject: who am I\r\n", b"anonymous\r\n"),
        "no_message_id": _msg(b"From: a@client.example\r\nSubject: no id\r\n", b"hello\r\n"),
        "long_header": _msg(b"From: a@client.example\r\nSubject: long\r\nX-Long: " + b"x" * 1_000_000 + b"\r\n",
                            b"hello\r\n"),
    }
    got = _ingest_all(instance, tmp_path, mails)
    assert set(got) == set(mails)
    assert {name: item["outcome"] for name, item in got.items()} == dict.fromkeys(mails, "new_ticket")
    assert instance.query("SELECT count(*) AS n FROM import_log")[0]["n"] == len(mails)

    def first(name: str) -> tuple[dict, dict]:
        ticket = instance.cli_json("ticket", "show", got[name]["ticket"])
        return ticket, ticket["messages"][0]

    assert "with NUL" in first("nul")[1]["body"]
    assert first("deep40")[1]["body"].strip() == "inner text"
    detail = instance.query("SELECT detail FROM import_log WHERE inbound_id = ?", (got["deep100"]["queue_id"],))
    assert "MIME structure truncated" in detail[0]["detail"]  # what was not read is said, not lost
    body = first("many")[1]["body"]
    assert "part 0\n" in body and "part 999" in body
    assert first("base64")[1]["body"].strip() == "Hello world"
    assert first("qp")[1]["body"].strip() == "café =ZZ broken"
    ticket, msg = first("encoded_words")
    assert (ticket["subject"], msg["author_email"]) == ("café =?utf-8?q?unterminated", "a@client.example")
    ticket, msg = first("adjacent_words")
    assert (ticket["subject"], msg["author_name"]) == ("été", "René")
    for name in ("8bit_utf8", "8bit_latin1"):
        ticket, msg = first(name)
        assert (ticket["subject"], msg["author_name"]) == ("café 8bit", "José"), name
    assert first("no_from")[1]["body"].strip() == "anonymous"
    assert first("long_header")[1]["body"].strip() == "hello"
    # With no Message-ID, the same mail again is still recognised as the same mail.
    again = instance.cli_json("ingest", "--department", "Sales", str(tmp_path / "hostile" / "no_message_id.eml"))
    assert again["items"][0]["outcome"] == "duplicate"


def test_html_is_sanitised_for_display(instance: Instance, tmp_path):
    raw = _msg(b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: html\r\n"
               b"Content-Type: text/html; charset=utf-8\r\n",
               b'<p onclick="steal()">Hi <b>there</b><script>alert(1)</script>'
               b'<a href="javascript:alert(2)">x</a><img src="cid:logo@x" onerror="y()"></p>')
    got = _ingest_all(instance, tmp_path, {"html": raw})
    msg = instance.cli_json("ticket", "show", got["html"]["ticket"])["messages"][0]
    assert "<b>there</b>" in msg["body_html"] and 'src="cid:logo@x"' in msg["body_html"]
    for bad in ("script", "onclick", "onerror", "javascript:"):
        assert bad not in msg["body_html"]
    assert msg["body"] == "Hi there x"


CHARSETS = {
    # label, bytes, expected text: labels that lie are decoded by the superset the sender really used.
    "gb2312_really_gbk": (b"gb2312", "朱镕基说：你好".encode("gbk"), "朱镕基说：你好"),
    "iso2022jp": (b"iso-2022-jp", "こんにちは、世界".encode("iso2022_jp"), "こんにちは、世界"),
    "shift_jis": (b"shift_jis", "ｶﾀｶﾅと①".encode("cp932"), "ｶﾀｶﾅと①"),
    # Windows-1258 writes tone marks as combining characters: ê + U+0323 is stored composed, as ệ.
    "windows1258": (b"windows-1258", b"Vi\xea\xf2t Nam, \xd0\xf4\xec ng\xf4n ng\xf4\xde",
                    "Vi\u1ec7t Nam, \u0110\u1ed1 ng\u00f4n ng\u1ed7"),
    "iso2022jp_katakana": (b"iso-2022-jp", b"\x1b(I6@6E\x1b(B \x1b$B$3$s\x1b(B", "ｶﾀｶﾅ こん"),
    "latin1_undefined_bytes": (b"iso-8859-1", b"\x93quoted\x94 \x81\x8d end", "\u201cquoted\u201d \x81\x8d end"),
    "utf8_labelled_latin1": (b"utf-8", "Grüße".encode("latin-1"), "Grüße"),
    "unknown_charset": (b"x-no-such-charset", "naïve".encode(), "naïve"),
}


@pytest.mark.parametrize("name", sorted(CHARSETS))
def test_charsets(instance: Instance, tmp_path, name):
    label, body, expected = CHARSETS[name]
    raw = _msg(b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: cs\r\n"
               b"Content-Type: text/plain; charset=" + label + b"\r\n", body + b"\r\n")
    got = _ingest_all(instance, tmp_path, {name: raw})
    assert instance.cli_json("ticket", "show", got[name]["ticket"])["messages"][0]["body"] == expected


def test_rfc2231_filename_and_a_1mb_header_line_over_smtp(daemon: Instance):
    raw = (b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: 2231\r\n"
           b"X-Long: " + b"y" * 1_000_000 + b"\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
           b"--Z\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
           b" filename*0*=utf-8''Rechnung%20M%C3%A4rz;\r\n filename*1*=.pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSBmYWtlCg==\r\n--Z--\r\n")
    import smtplib

    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=60) as smtp:
        assert smtp.sendmail("a@client.example", ["support@helpdesk.example"], raw) == {}
    rows = daemon.wait_outcomes(1)
    assert rows[0]["outcome"] == "new_ticket"
    tid = daemon.query("SELECT tid FROM tickets")[0]["tid"]
    files = daemon.cli_json("ticket", "show", tid)["messages"][0]["attachments"]
    assert [f["filename"] for f in files] == ["Rechnung März.pdf"]
