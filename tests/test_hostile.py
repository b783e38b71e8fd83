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
