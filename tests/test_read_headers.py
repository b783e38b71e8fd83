"""Mail read right (issue 9, part 1): broken header blocks, Japanese charsets, raw 8-bit headers in a
legacy charset, a messy but single From, and mixed encodings inside one part. Each point end to end (the
ticket and the import log show it) with mail built here and from the shared corpus, plus unit tests of
the readers."""

from __future__ import annotations

import base64
import json
import mailbox
from pathlib import Path

import pytest

from maild.pipeline.charsets import decode_8bit, decode_text, guess
from maild.pipeline.headers import single_author
from maild.pipeline.parse import parse, repair_header_block
from tests.helpers import CORPUS, Instance


def corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        raise AssertionError(f"the shared corpus is missing {path} (a checkout of ../shared is needed)")
    return path.read_bytes()


def mail(*headers: str, body: bytes = b"Hello.\r\n") -> bytes:
    return "".join(h + "\r\n" for h in headers).encode("utf-8", "surrogateescape") + b"\r\n" + body


def raw_mail(head: bytes, body: bytes) -> bytes:
    return head.replace(b"\n", b"\r\n") + b"\r\n" + body


def ingest(inst: Instance, *mails: bytes) -> list[dict]:
    folder = inst.root / f"batch{len(list(inst.root.glob('batch*')))}"
    folder.mkdir()
    for i, raw in enumerate(mails):
        (folder / f"{i:03}.eml").write_bytes(raw)
    items = inst.cli_json("ingest", "--department", "Technical Support", str(folder))["items"]
    assert len(items) == len(mails)
    return items


def ticket(inst: Instance, item: dict) -> dict:
    assert item["outcome"] == "new_ticket", item
    return inst.cli_json("ticket", "show", item["ticket"])


def log_detail(inst: Instance, item: dict) -> str:
    rows = [r for r in inst.cli_json("import-log", "--all")["items"] if r["queue_id"] == item["queue_id"]]
    assert len(rows) == 1, rows
    return json.loads(inst.cli("import-log", "show", str(rows[0]["id"]), "--json").stdout)["detail"] or ""


# -- 1. Broken header blocks ------------------------------------------------------------------------------


def test_broken_header_blocks_keep_their_headers(instance: Instance):
    unindented = raw_mail(b"From: Ann Example <ann@client.example>\n"
                          b"To: support@helpdesk.example\n"
                          b"Subject: The printer on the second floor\n"
                          b"prints only blank pages\n"      # a continuation line that lost its indent
                          b"Message-ID: <unindented@client.example>\n"
                          b"Content-Type: text/plain; charset=utf-8\n", "Grüße, Ann\r\n".encode())
    banner = raw_mail(b"*** This message was scanned by MailGuard 2.1 ***\n"   # a gateway's banner line
                      b"From: Bob Builder <bob@client.example>\n"
                      b"To: support@helpdesk.example\n"
                      b"Subject: VPN drops every hour\n"
                      b"Message-ID: <banner@client.example>\n"
                      b"Content-Type: text/plain; charset=iso-8859-1\n", b"Merci, Bob \xe0 bient\xf4t\r\n")
    items = ingest(instance, unindented, banner,
                   corpus("mikel-mail/plain_emails__raw_email_incorrect_header.eml"),
                   corpus("jstedfast-MimeKit/messages__issue358.eml"))

    first = ticket(instance, items[0])
    assert first["subject"] == "The printer on the second floor prints only blank pages"
    assert (first["client_email"], first["client_name"]) == ("ann@client.example", "Ann Example")
    assert first["messages"][0]["body"].strip() == "Grüße, Ann"    # Content-Type kept: read as UTF-8
    assert "after Subject read as its continuation" in log_detail(instance, items[0])

    second = ticket(instance, items[1])
    assert (second["subject"], second["client_email"]) == ("VPN drops every hour", "bob@client.example")
    assert second["messages"][0]["body"].strip() == "Merci, Bob à bientôt"
    assert "MailGuard" not in second["messages"][0]["body"]
    assert "before the first header left out ('*** This message was scanned" in log_detail(instance, items[1])

    # Corpus: a Received-SPF line wrapped without indent used to turn every later header into body text.
    spam = ticket(instance, items[2])
    assert spam["subject"] == "Stop adware/spyware once and for all."
    assert (spam["client_email"], spam["client_name"]) == ("xxx@xxx.xxx", "xxx xxx")
    assert spam["messages"][0]["body"].startswith("You are infected with:")
    assert "Delivered-To:" not in spam["messages"][0]["body"]
    exchange = ticket(instance, items[3])
    assert exchange["messages"][0]["body"].strip() == "Test headers"
    assert "x-microsoft-exchange-diagnostics read as its continuation" in log_detail(instance, items[3])


def test_a_body_without_an_empty_line_stays_the_body():
    # Not a header block repair: nothing that looks like a header follows the stray lines.
    raw = b"From: ann@client.example\r\nSubject: no blank line\r\nHello there,\r\nthe body starts here.\r\n"
    fixed, notes = repair_header_block(raw)
    assert (fixed, notes) == (raw, [])
    parsed = parse(raw)
    assert (parsed.from_addr, parsed.subject) == ("ann@client.example", "no blank line")
    assert "the body starts here." in parsed.content.text
    ordinary = raw_mail(b"From: a@b.example\nSubject: x\n\tfolded\n", b"Body\r\nNote: not a header\r\n")
    assert repair_header_block(ordinary) == (ordinary, [])


def test_a_mime_boundary_right_after_the_headers_starts_the_body():
    """Multipart mail whose first boundary follows the headers with no empty line: the boundary is never
    an unindented continuation, and the part's own headers never become the message's."""
    raw = (b"From: ann@client.example\r\nTo: support@helpdesk.example\r\nSubject: no gap\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
           b"hello there\r\n--b--\r\n")
    assert repair_header_block(raw) == (raw, [])
    parsed = parse(raw)
    assert (parsed.subject, parsed.content.text.strip()) == ("no gap", "hello there")


def test_an_mbox_from_line_and_a_byte_order_mark_are_not_banners():
    raw = b"From bob@client.example Tue Nov 24 10:00:00 2026\nFrom: Bob <bob@client.example>\nSubject: s\n\nb\n"
    assert repair_header_block(raw) == (raw, [])
    bom = parse(b"\xef\xbb\xbfFrom: Ann <ann@client.example>\r\nSubject: with BOM\r\n\r\nBody\r\n")
    assert (bom.from_addr, bom.subject, bom.content.text.strip()) == ("ann@client.example", "with BOM", "Body")
    assert any("byte order mark" in n for n in bom.notes)


# -- 2. Japanese mail ---------------------------------------------------------------------------------------

NEC = "①②③ⅠⅡⅢ㈱№"   # NEC row 13 of CP50220/cp932: not in JIS X 0208, so no standard ISO-2022-JP codec reads them


def cp50220(text: str) -> bytes:
    """ISO-2022-JP as Windows writes it: JIS X 0208 mode over cp932's two-byte codes (NEC row 13 too)."""
    out, jis = bytearray(), False
    for ch in text:
        sjis = ch.encode("cp932")
        if len(sjis) == 1:
            if jis:
                out += b"\x1b(B"
                jis = False
            out += sjis
            continue
        if not jis:
            out += b"\x1b$B"
            jis = True
        s1, s2 = sjis
        s1 -= 0x40 if s1 >= 0xE0 else 0
        c1 = (s1 - 0x70) * 2 - (1 if s2 < 0x9F else 0)
        c2 = s2 - (0x7E if s2 >= 0x9F else (0x20 if s2 >= 0x80 else 0x1F))
        out += bytes([c1, c2])
    return bytes(out + (b"\x1b(B" if jis else b""))


def test_japanese_decoders():
    text = f"お見積り{NEC}について"
    assert decode_text(cp50220(text) + b"\r\n", "iso-2022-jp") == text + "\r\n"
    assert cp50220("日本語") == "日本語".encode("iso2022_jp")     # the test's encoder agrees with Python's
    assert decode_text(text.encode("cp932"), "ISO-2022-JP") == text         # really Shift_JIS
    assert decode_text("見積書をお送りします".encode("euc_jp"), "iso-2022-jp") == "見積書をお送りします"
    assert decode_text("見積書をお送りします".encode("euc_jp"), "shift_jis") == "見積書をお送りします"
    # Half-width katakana in Shift_JIS (old mobile mail) also decodes as EUC-JP, into kanji: not taken.
    for label in ("shift_jis", "iso-2022-jp"):
        assert decode_text("ｵﾐﾂﾓﾘｦｵｸﾘｼﾏｽ".encode("cp932"), label) == "ｵﾐﾂﾓﾘｦｵｸﾘｼﾏｽ"
    assert decode_text("ｶﾀｶﾅ".encode("iso2022_jp_ext"), "iso-2022-jp") == "ｶﾀｶﾅ"  # ESC ( I half-width
    assert decode_text("日本語".encode("iso2022_jp"), "shift_jis") == "日本語"  # the label says Shift_JIS
    assert decode_text(cp50220("無記名") + b"\n", None) == "無記名\n"           # no label at all
    for label in ("iso-2022-jp", "shift_jis", None):
        assert "\x1b" not in decode_text(b"\x1b$B\x7f\x7f\x1b$(D\x30\x21\x1b(Bok", label)


def test_japanese_mail_end_to_end(instance: Instance):
    subject = f"=?ISO-2022-JP?B?{base64.b64encode(cp50220('請求書' + NEC)).decode()}?="
    nec = mail("From: =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <yamada@client.example>",
               "To: support@helpdesk.example", f"Subject: {subject}", "Message-ID: <nec@client.example>",
               "Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit",
               body=cp50220(f"お世話になっております。{NEC}") + b"\r\n")
    sjis = mail("From: suzuki@client.example", "To: support@helpdesk.example", "Subject: sjis",
                "Message-ID: <sjis@client.example>", "Content-Type: text/plain; charset=ISO-2022-JP",
                "Content-Transfer-Encoding: 8bit", body="よろしくお願いいたします。②\r\n".encode("cp932"))
    first, second = (ticket(instance, i) for i in ingest(instance, nec, sjis))
    assert first["subject"] == "請求書" + NEC
    assert first["client_name"] == "山田太郎"
    assert first["messages"][0]["body"].strip() == f"お世話になっております。{NEC}"
    assert second["messages"][0]["body"].strip() == "よろしくお願いいたします。②"
    assert all("\x1b" not in t["messages"][0]["body"] for t in (first, second))


def test_raw_iso_2022_jp_headers_without_rfc2047():
    # Old Japanese mailers wrote JIS straight into the header: 7-bit, so nothing looked wrong to the parser.
    raw = (b"From: " + cp50220("山田") + b" <yamada@client.example>\r\nSubject: " + cp50220("会議①の件") + b"\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\""
           + cp50220("資料.pdf") + b"\"\r\n\r\n%PDF-1.4\r\n--b--\r\n")
    parsed = parse(raw)
    assert (parsed.subject, parsed.from_name, parsed.from_addr) == ("会議①の件", "山田", "yamada@client.example")
    assert [p.filename for p in parsed.content.parts] == ["資料.pdf"]


def test_labels_that_are_not_text_never_stop_a_message():
    for raw in (b"From: a@client.example\r\nSubject: =?\xc9\xc9?B?abc?= \xe9t\xe9\r\n\r\nbody\r\n",
                b"From: a@client.example\r\nSubject: \xe9t\xe9\r\nContent-Type: text/plain; charset=\"\xc9\x1b$B\"\r\n"
                b"\r\nbody \xe9\r\n"):
        parsed = parse(raw)
        assert parsed.from_addr == "a@client.example" and "été" in parsed.subject


def test_japanese_corpus_mail():
    # A Japanese bounce labelled ISO-2022-JP whose bytes are EUC-JP (it was read as Latin-1 mojibake).
    parsed = parse(corpus("sisimai-set-of-emails/bsd__lhost-ezweb-02.eml"))
    assert "次のあて先へのメッセージはエラーのため送信できませんでした。" in parsed.content.text
    shift_jis = parse(corpus("mikel-mail/multi_charset__japanese_shift_jis.eml"))
    assert shift_jis.content.text.startswith("あいうえお")


# -- 3. Raw 8-bit headers in a legacy charset ------------------------------------------------------------


def test_raw_8bit_headers_take_the_bodys_charset_or_a_detected_one(instance: Instance):
    def legacy(charset: str, name: str, subject: str, filename: str, body: str, n: int) -> bytes:
        boundary = b"b0undary"
        head = (f"From: {name} <sender{n}@client.example>\r\nTo: support@helpdesk.example\r\n"
                f"Subject: {subject}\r\nMessage-ID: <legacy{n}@client.example>\r\n"
                "MIME-Version: 1.0\r\n").encode(charset)
        head += b'Content-Type: multipart/mixed; boundary="b0undary"\r\n'
        parts = (b"--" + boundary + b"\r\nContent-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n"
                 + body.encode(charset) + b"\r\n--" + boundary + b"\r\nContent-Type: text/plain\r\n"
                 + b'Content-Disposition: attachment; filename="' + filename.encode(charset) + b'"\r\n\r\n'
                 + b"notes\r\n--" + boundary + b"--\r\n")
        return head + b"\r\n" + parts

    cases = [
        ("gb2312", "王小明", "关于发票的问题", "报价单.txt", "请查收附件。"),
        ("big5", "陳大文", "會議記錄", "報告.txt", "請參閱附件。"),
        ("koi8-r", "Иван Петров", "Счёт за октябрь", "Отчёт.txt", "Добрый день."),
        ("shift_jis", "山田太郎", "見積書について", "請求書.txt", "よろしくお願いします。"),
    ]
    raws = [legacy(*case, n) for n, case in enumerate(cases)]
    # No declared charset anywhere (body us-ascii): the detector alone, over all of the mail's 8-bit headers.
    undeclared = ("From: Сергей Смирнов <sergey@client.example>\r\nTo: support@helpdesk.example\r\n"
                  "Subject: Не работает принтер в бухгалтерии\r\nMessage-ID: <undeclared@client.example>\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n\r\nsee subject\r\n").encode("koi8-r")
    items = ingest(instance, *raws, undeclared,
                   corpus("bestpractical-rt/emails__russian-subject-no-content-type.eml"))
    for item, (_, name, subject, filename, body) in zip(items, cases, strict=False):
        t = ticket(instance, item)
        assert (t["subject"], t["client_name"]) == (subject, name)
        assert t["messages"][0]["body"].strip() == body
        assert [a["filename"] for a in t["messages"][0]["attachments"]] == [filename]
    t = ticket(instance, items[4])
    assert (t["subject"], t["client_name"]) == ("Не работает принтер в бухгалтерии", "Сергей Смирнов")
    assert "read as koi8_r" in log_detail(instance, items[4])
    assert ticket(instance, items[5])["subject"] == "тест тест"      # corpus: KOI8-R, no Content-Type at all
    for item in items:
        t = ticket(instance, item)
        assert "\ufffd" not in t["subject"] + (t["client_name"] or "")


def test_guess_prefers_utf8_then_the_hints():
    assert guess("Jörg".encode()) == "utf-8"
    assert guess("王小明".encode("gbk"), ["gb2312"]) == "gb18030"
    assert guess("王小明".encode("gbk"), ["us-ascii", "x-unknown", "gbk"]) == "gb18030"
    assert guess(b"plain") is None
    # A single-byte hint decodes anything, so it wins only when its reading is as good as the detector's.
    assert guess("Jörg Müller".encode("cp1252"), ["iso-8859-1"]) == "cp1252"
    assert guess("Счёт Иван Петров".encode("koi8-r"), ["koi8-r"]) == "koi8-r"
    assert guess("关于发票的问题".encode("gbk"), ["iso-8859-1"]) == "gb18030"
    assert guess("Łódź Kraków".encode("cp1250"), ["windows-1252"]) == "cp1250"
    assert decode_8bit("陳大文".encode("big5"), ["big5"]) == "陳大文"
    # What no hint and no detector can read still keeps every byte (cp1252, latin-1 for its holes).
    assert "\ufffd" not in decode_8bit(b"\x81\x8d\x8f\x90\x9d", [])
    # Corpus: raw 8-bit attachment names (cp1251, Latin-1) were U+FFFD; the parts are refused later (zip,
    # binhex), so the parser's reading is what there is to check.
    assert parse(corpus("spamscope-mail-parser/mail_test_1.eml")).content.parts[0].filename == "ФНС_РФ558.zip"
    names = [p.filename for p in parse(corpus("zbateson-mail-mime-parser/m2011.eml")).content.parts]
    assert "HasenundFrösche.txt" in names
    # Raw UTF-8 cut off in the middle of a character is still UTF-8 (it was U+FFFD, then mojibake).
    (png,) = parse(corpus("mailgun-flanker/russian-attachment-yahoo.eml")).content.parts
    assert png.filename is not None and png.filename.startswith("Картинка с очень, очень длинным")


# -- 4. One sender, a messy name ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, name", [
    ('"=?utf-8?Q?J=C3=B6rg_M=C3=BCller?=" <jorg@client.example>', "Jörg Müller"),   # an encoded word in quotes
    ("=?utf-8?Q?J=C3=B6rg?=<jorg@client.example>", "Jörg"),                         # no space before <
    ("Jörg   Müller   <jorg@client.example>", "Jörg Müller"),                        # stray spaces
    ("Müller, Jörg <jorg@client.example>", "Müller, Jörg"),                          # an unquoted comma
    ("Jörg Müller <jorg@client.example", "Jörg Müller"),                             # a lost >
    ('"jorg@client.example" <JORG@client.example>', "jorg@client.example"),          # the same address twice
])
def test_one_address_with_a_messy_name_is_that_sender(value: str, name: str):
    assert single_author([value]) == (name, "jorg@client.example", "")


@pytest.mark.parametrize("values", [
    ["owner@acme.example <mallory@evil.example>"],
    ["=?utf-8?q?owner@acme.example?= <mallory@evil.example>"],     # the same trick inside an encoded word
    ["owner@acme.example, mallory@evil.example"],
    ["Olivia <owner@acme.example>", "Mallory <mallory@evil.example>"],
    ["Olivia <owner@@acme.example>"],
    ["Olivia <owner@>"],
    ["Olivia <owner>"],                                             # meant as an address, does not parse
])
def test_what_is_really_ambiguous_names_no_one(values: list[str]):
    name, addr, problem = single_author(values)
    assert (name, addr) == ("", "") and problem


def test_messy_and_missing_from_end_to_end(tmp_path: Path):
    inst = Instance(tmp_path)
    inst.cli("clients", "add", "owner@acme.example", "--account", "Acme", "--name", "Olivia Owner")
    base = ("To: support@helpdesk.example", "Content-Type: text/plain; charset=utf-8")
    messy = mail('From: "=?utf-8?Q?Olivia_=C3=96wner?="<owner@acme.example>', *base, "Subject: messy",
                 "Message-ID: <messy@acme.example>")
    ambiguous = mail("From: owner@acme.example <mallory@evil.example>", *base, "Subject: ambiguous",
                     "Message-ID: <ambiguous@evil.example>", "Reply-To: mallory@evil.example")
    reply_to = mail("From: Mailer", *base, "Subject: no address", "Message-ID: <noaddr@acme.example>",
                    "Reply-To: Olivia <owner@acme.example>")
    return_path = mail("Return-Path: <bounce-me@lists.example>", *base, "Subject: no from",
                       "Message-ID: <nofrom@lists.example>")
    inst.cli("ban", "add", "*@junk.example")
    banned = mail("From: Nobody", *base, "Subject: banned", "Message-ID: <banned@junk.example>",
                  "Reply-To: spam@junk.example")
    ours = mail("From: Nobody", *base, "Subject: ours", "Message-ID: <ours@client.example>",
                "Reply-To: help@helpdesk.example")
    items = ingest(inst, messy, ambiguous, reply_to, return_path, banned, ours)
    assert (items[4]["outcome"], items[4]["reason"]) == ("blocked", "banned")   # the Reply-To we would answer
    assert (items[5]["outcome"], items[5]["reason"]) == ("blocked", "loop")     # ... is never our own address
    t = ticket(inst, items[0])
    assert (t["client_email"], t["client_name"]) == ("owner@acme.example", "Olivia Öwner")
    assert t["messages"][0]["badge"] == "Owner"                      # a messy name is still the owner
    t = ticket(inst, items[1])
    assert not t["client_email"]                                     # unclear: no one, not even the Reply-To
    assert "ambiguous From header" in log_detail(inst, items[1])
    t = ticket(inst, items[2])                                       # no usable From: answer the Reply-To
    assert (t["client_email"], t["client_name"], t["messages"][0]["badge"]) == ("owner@acme.example", "Olivia",
                                                                              "Guest")
    assert "answering owner@acme.example (Reply-To) as a Guest" in log_detail(inst, items[2])
    t = ticket(inst, items[3])                                       # none at all: the envelope (Return-Path)
    assert (t["client_email"], t["messages"][0]["badge"]) == ("bounce-me@lists.example", "Guest")

    box_path = tmp_path / "old.mbox"
    box = mailbox.mbox(box_path)
    entry = mailbox.mboxMessage(mail(*base, "Subject: from an mbox", "Message-ID: <mbox@client.example>"))
    entry.set_from("carol@client.example", True)
    box.add(entry)
    box.close()
    (item,) = inst.cli_json("ingest", "--department", "Technical Support", str(box_path))["items"]
    t = ticket(inst, item)
    assert (t["subject"], t["client_email"], t["messages"][0]["badge"]) == ("from an mbox", "carol@client.example",
                                                                         "Guest")
    assert "envelope sender" in log_detail(inst, item)


def test_a_clients_address_taken_for_want_of_a_from_brings_in_no_cc(tmp_path: Path):
    """Answering the Reply-To or the envelope sender earns no badge, and where that address is a known
    client's, whoever the mail copies waits, pending, as under a forged From of theirs (never a leak)."""
    inst = Instance(tmp_path)
    inst.cli("clients", "add", "owner@acme.example", "--account", "Acme", "--name", "Olivia Owner")
    base = ("To: support@helpdesk.example", "Cc: mallory@evil.example", "Content-Type: text/plain; charset=utf-8")
    via_reply_to = mail("From: Olivia", *base, "Subject: via reply-to", "Message-ID: <rt@evil.example>",
                        "Reply-To: owner@acme.example")
    via_envelope = mail("Return-Path: <owner@acme.example>", *base, "Subject: via return-path",
                        "Message-ID: <rp@evil.example>")
    stranger = mail("From: Someone", *base, "Subject: a stranger", "Message-ID: <st@client.example>",
                    "Reply-To: new@client.example")
    items = ingest(inst, via_reply_to, via_envelope, stranger)
    for item, state in zip(items, ("pending", "pending", "confirmed"), strict=True):
        t = ticket(inst, item)
        assert t["messages"][0]["badge"] == "Guest"
        cc = inst.query("SELECT state FROM cc_recipients WHERE ticket_id = (SELECT id FROM tickets WHERE tid = ?)",
                        (t["tid"],))
        assert [r["state"] for r in cc] == [state], (t["subject"], [dict(r) for r in cc])
    queued = {r["recipient"] for r in inst.query("SELECT recipient FROM outbox")}
    assert "mallory@evil.example" in queued                         # the stranger's CC is welcome
    mallory = inst.query("SELECT count(*) FROM outbox o JOIN tickets t ON t.id = o.ticket_id"
                         " WHERE o.recipient = 'mallory@evil.example' AND t.client_email = 'owner@acme.example'")
    assert mallory[0][0] == 0


# -- 7. Mixed encodings inside one part ------------------------------------------------------------------


def test_mixed_encodings_decode_line_by_line(instance: Instance):
    lines = ["Grüße aus Köln".encode("latin-1"), "— forwarded: “Straße” ✓".encode(), b"plain ascii",
             "Ça coûte 5 €".encode("cp1252")]
    body = b"\r\n".join(lines) + b"\r\n"
    expected = "Grüße aus Köln\n— forwarded: “Straße” ✓\nplain ascii\nÇa coûte 5 €"
    raws = [mail("From: dan@client.example", "To: support@helpdesk.example", f"Subject: mixed {label}",
                 f"Message-ID: <mixed{n}@client.example>", f"Content-Type: text/plain; charset={label}", body=body)
            for n, label in enumerate(("iso-8859-1", "utf-8", "windows-1252"))]
    for item in ingest(instance, *raws):
        assert ticket(instance, item)["messages"][0]["body"].strip() == expected
    # The declared charset still reads the lines that are not UTF-8.
    assert decode_text("Привет\n".encode("koi8-r") + "Привет\n".encode(), "koi8-r") == "Привет\nПривет\n"
    # Corpus: UTF-8 HTML with one line broken by a stray byte; the whole part used to become cp1252 mojibake.
    text = parse(corpus("spamscope-mail-parser/mail_test_6.eml")).content.text
    assert "Профиль" in text and "Внимание! Вы получили это письмо" in text and "Ð" not in text
    # A line that is UTF-8 but for one byte keeps its UTF-8; the byte is kept too (as cp1252).
    assert decode_text("Привет, мир".encode() + b"\xff\n", "utf-8") == "Привет, мирÿ\n"
