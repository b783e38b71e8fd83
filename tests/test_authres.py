"""Authentication-Results parsing on headers as real servers write them (Gmail, Microsoft 365, OpenDKIM,
rspamd), and the rule that decides whether a From domain was verified."""

from __future__ import annotations

from maild.pipeline.authres import parse, verified_by

GMAIL = ("mx.google.com;\r\n       dkim=pass header.i=@example.com header.s=20230601 header.b=AbCdEf12;\r\n"
         "       spf=pass (google.com: domain of alice@example.com designates 209.85.220.41 as permitted sender)"
         " smtp.mailfrom=alice@example.com;\r\n"
         "       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.com")
MICROSOFT = ("spf=pass (sender IP is 40.107.1.1) smtp.mailfrom=contoso.com; dkim=pass (signature was verified)"
             " header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;compauth=pass reason=100")
OPENDKIM = "mail.example.org; dkim=pass (2048-bit key; unprotected) header.d=example.org header.i=@example.org"
RSPAMD = ('mx.helpdesk.example;\tdkim=pass header.d=helpdesk.example header.s=dkim header.b="qDa;Yx=";'
          '\tdmarc=pass (policy=reject) header.from=helpdesk.example;\tspf=pass smtp.mailfrom=sam@helpdesk.example')


def test_parse_real_headers():
    g = parse(GMAIL)
    assert g is not None and g.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in g.results] == [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]
    assert g.results[0].props["header.i"] == "@example.com"
    assert g.results[1].props["smtp.mailfrom"] == "alice@example.com"  # the comment's words are not props
    assert parse(MICROSOFT) is None  # Microsoft 365 writes no authserv-id: nothing to trust it by
    r = parse(RSPAMD)
    assert r is not None and r.results[0].props["header.b"] == "qDa;Yx="  # quoted ";" does not split
    assert [x.method for x in r.results] == ["dkim", "dmarc", "spf"]
    assert parse("") is None and parse("   ") is None


def test_verified_by_trusted_server_only():
    assert verified_by([GMAIL], ("mx.google.com",), "example.com") == "dkim=pass (d=example.com) at mx.google.com"
    assert verified_by([GMAIL], ("mx.google.com",), "sub.example.com").startswith("dkim=pass")  # relaxed
    assert verified_by([GMAIL], ("mx.google.com",), "example.net") == ""
    assert verified_by([GMAIL], (), "example.com") == ""                 # nothing trusted: nothing verified
    assert verified_by([GMAIL], ("mx.example.org",), "example.com") == ""
    assert verified_by([OPENDKIM], ("mail.example.org",), "example.org").startswith("dkim=pass")
    assert verified_by([RSPAMD], ("MX.helpdesk.example.",), "helpdesk.example") != ""


def test_only_the_topmost_trusted_header_counts():
    ours = "mx.helpdesk.example; dkim=fail header.d=helpdesk.example; dmarc=fail header.from=helpdesk.example"
    forged = "mx.helpdesk.example; dkim=pass header.d=helpdesk.example"
    other = "relay.elsewhere.example; dkim=pass header.d=helpdesk.example"
    trusted = ("mx.helpdesk.example",)
    assert verified_by([ours, forged], trusted, "helpdesk.example") == ""
    assert verified_by([other, forged], trusted, "helpdesk.example") != ""  # others' headers are skipped
    assert verified_by(["mx.helpdesk.example; dkim=pass header.d=example"], trusted, "helpdesk.example") == ""
    assert verified_by(["mx.helpdesk.example; dkim=pass header.d=ample.example"], trusted, "example") == ""


def test_nothing_in_a_comment_or_a_quoted_string_poses_as_a_result():
    """Text the sender controls (the envelope sender, quoted in the MTA's comment) must stay inside it,
    escaped brackets and quotes included."""
    trusted = ("mx.helpdesk.example",)
    escaped = ('mx.helpdesk.example; dkim=none; spf=pass (mx.helpdesk.example: domain of\r\n '
               '"a\\);dkim=pass header.d=helpdesk.example;\\(b"@evil.example designates 203.0.113.9 as permitted'
               ' sender)\r\n smtp.mailfrom=evil.example; dmarc=fail (p=reject) header.from=helpdesk.example')
    unescaped = ('mx.helpdesk.example; dkim=none; spf=pass (domain of "a);dkim=pass header.d=helpdesk.example;(b"'
                 '@evil.example designates 203.0.113.9) smtp.mailfrom=evil.example')
    for value in (escaped, unescaped):
        found = parse(value)
        assert found is not None
        assert [(r.method, r.result) for r in found.results][:2] == [("dkim", "none"), ("spf", "pass")], value
        assert "dkim=pass" not in str(found.results)
        assert verified_by([value], trusted, "helpdesk.example") == ""
    in_reason = 'mx.helpdesk.example; dkim=fail reason="x; dkim=pass header.d=helpdesk.example"'
    assert verified_by([in_reason], trusted, "helpdesk.example") == ""
    assert parse('mx.helpdesk.example; dkim=pass header.d=helpdesk.example (open comment') is None
    assert parse('mx.helpdesk.example; dkim=pass header.d="helpdesk.example') is None
    # Our server's own header made unreadable by the sender's words must not let a forged one below count.
    broken_ours = 'mx.helpdesk.example; spf=pass (domain of "a(b@evil.example designates 203.0.113.9)'
    forged_below = "mx.helpdesk.example; dkim=pass header.d=helpdesk.example"
    assert parse(broken_ours) is None
    assert verified_by([broken_ours, forged_below], trusted, "helpdesk.example") == ""
    assert verified_by(["other.example; (open", forged_below], trusted, "helpdesk.example") != ""
    spaced = "mx.helpdesk.example ; dkim = pass header.d = helpdesk.example"
    assert verified_by([spaced], trusted, "helpdesk.example").startswith("dkim=pass")


def test_hostile_values_do_not_break_the_parser():
    for value in ("((((((((((((x", '"unterminated; dkim=pass', "id; dkim=pass header.d=" + "a" * 100000):
        assert parse(value) is None  # open comment, open quote, absurd length: proves nothing
    assert parse("a; =;==; dkim").results == ()
    assert parse("x;" * 5000).results == ()
    nul = parse("\x00 x; dkim=pass header.d=\x00 1\x00")
    assert nul is not None and nul.authserv_id == "x" and nul.results[0].props == {"header.d": "1"}
    assert parse("id (comment (nested)) ; dkim=pass header.d=a.example").results[0].props == {"header.d": "a.example"}
