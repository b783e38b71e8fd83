"""Quote stripping on real replies from the corpus (mailgun/talon fixtures); the expected visible text
is written here by hand from reading each message."""

from __future__ import annotations

import pytest

from maild.pipeline.parse import parse
from maild.pipeline.quotes import REPLY_MARKER, visible
from tests.helpers import CORPUS, Instance, corpus_files, make_mail

EXPECTED = {
    "standard_replies__android.eml": "Hello",
    "standard_replies__aol.eml": "Hello",
    "standard_replies__apple_mail.eml": "Hello",
    "standard_replies__apple_mail_2.eml": "Hello",
    "standard_replies__comcast.eml": "Hello",
    "standard_replies__gmail.eml": "Hello",
    "standard_replies__hotmail.eml": "Hello",
    "standard_replies__iphone.eml": "Hello\n\nSent from my iPhone",
    "standard_replies__outlook.eml": "Hello",
    "standard_replies__sparrow.eml": "Hello\n\n--\nxxx\nSent with Sparrow (http://www.sparrowmailapp.com/?sig)",
    "standard_replies__thunderbird.eml": "Hello",
    "standard_replies__yahoo.eml": "Hello",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_talon_replies(name):
    corpus_files()  # fails clearly when ../shared is missing
    mail = parse((CORPUS / "mailgun-talon" / name).read_bytes())
    assert visible(mail.content.text) == EXPECTED[name]


def test_yahoo_share_block_keeps_the_whole_answer():
    mail = parse((CORPUS / "mailgun-talon" / "reply-quotations-share-block.eml").read_bytes())
    shown = visible(mail.content.text)
    assert shown.startswith("Hi Katharine.") and shown.endswith("Joe XXX")
    assert "booking inquiry" not in shown


def test_our_marker_and_outlook_web_headers():
    text = f"Thanks, fixed.\n\n{REPLY_MARKER}\nTicket #123456 was updated ..."
    assert visible(text) == "Thanks, fixed."
    outlook_web = ("Works now!\n\n________________________________\nFrom: Support <support@helpdesk.example>\n"
                   "Sent: Monday, 23 November 2026 10:00\nTo: Alice\nSubject: Re: VPN\n\nOld text")
    assert visible(outlook_web) == "Works now!"
    german = "Danke!\n\nAm 23.11.2026 um 10:00 schrieb Support <support@helpdesk.example>:\n> alt"
    assert visible(german) == "Danke!"


def test_reply_in_the_thread_shows_only_the_new_text(instance: Instance, tmp_path):
    first = make_mail(subject="VPN", body="The VPN is down.\n")
    reply = make_mail(subject="Re: VPN", in_reply_to=first["Message-ID"],
                      body="It works again, thanks.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Support wrote:\n> Try now\n")
    for i, msg in enumerate((first, reply)):
        (tmp_path / f"{i}.eml").write_bytes(msg.as_bytes())
    out = instance.cli_json("ingest", str(tmp_path))
    t = instance.cli_json("ticket", "show", out["items"][0]["ticket"])
    assert t["messages"][0]["body"] == "The VPN is down."          # a new ticket shows everything
    assert t["messages"][1]["body"] == "It works again, thanks."
    assert "> Try now" in t["messages"][1]["body_full"]


HTML_REPLIES = {
    # What the clients send when the user answers in HTML only, trimmed to the structure that matters.
    "gmail": '<div dir="ltr">Thanks, that fixed it!</div><br><div class="gmail_quote"><div dir="ltr" '
             'class="gmail_attr">On Mon, Nov 23, 2026 at 10:02 AM Support &lt;<a href="mailto:support@helpdesk.'
             'example">support@helpdesk.example</a>&gt; wrote:<br></div><blockquote class="gmail_quote">'
             '<div>Please restart the service.</div></blockquote></div>',
    "outlook_web": '<html><body><div>Thanks, that fixed it!</div><div id="appendonsend"></div><hr tabindex="-1">'
                   '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri"><b>From:</b> Support &lt;support@'
                   'helpdesk.example&gt;<br><b>Sent:</b> Monday, November 23, 2026 10:02 AM<br><b>To:</b> Ann &lt;'
                   'ann@client.example&gt;<br><b>Subject:</b> Re: Server down</font></div><div>Please restart the'
                   ' service.</div></body></html>',
    "apple_mail": '<html><body>Thanks, that fixed it!<br><div><br><blockquote type="cite"><div>On 23 Nov 2026, at '
                  '10:02, Support &lt;support@helpdesk.example&gt; wrote:</div><br><div>Please restart the service.'
                  '</div></blockquote></div></body></html>',
}


@pytest.mark.parametrize("client", sorted(HTML_REPLIES))
def test_html_only_reply_shows_only_the_new_text(instance: Instance, tmp_path, client):
    first = make_mail(subject="Server down", body="The server is down.\n")
    reply = make_mail(subject="Re: Server down", in_reply_to=first["Message-ID"])
    reply.set_content(HTML_REPLIES[client], subtype="html")
    for i, msg in enumerate((first, reply)):
        (tmp_path / f"{i}.eml").write_bytes(msg.as_bytes())
    out = instance.cli_json("ingest", str(tmp_path))
    assert [i["outcome"] for i in out["items"]] == ["new_ticket", "reply"]
    answer = instance.cli_json("ticket", "show", out["items"][0]["ticket"])["messages"][1]
    assert answer["body"] == "Thanks, that fixed it!"
    assert "Please restart the service." in answer["body_full"]
    assert "Please restart the service." in answer["body_html"] and "<script" not in answer["body_html"]
