"""The staff desk in the browser, over real HTTP (issue 12): the ticket list and its filters, search and
pages; the ticket page and its forms, each through the desk (the reply reaches the test relay, threaded);
department limits (404 for everything of another department); CSRF on every form; mail HTML made inert."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import Instance, ingest, make_mail
from tests.relay import Relay
from tests.test_web import serving
from tests.webclient import PASSWORD, Browser, form_values

pytestmark = pytest.mark.both_engines
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


class Desk:
    def __init__(self, inst: Instance, port: int, tech: str, billing: str, tech_mid: str) -> None:
        self.inst, self.port, self.tech, self.billing, self.tech_mid = inst, port, tech, billing, tech_mid

    def browser(self, username: str) -> Browser:
        b = Browser(self.port)
        status, _, page = b.sign_in(username)
        assert status == 303, page
        return b


@pytest.fixture
def desk(tmp_path: Path, database_url: str, relay: Relay) -> Iterator[Desk]:
    inst = Instance(tmp_path, database_url=database_url, extra_config=relay.outbound_toml())
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada Lovelace", "--admin")
    inst.cli("staff", "add", "dora@helpdesk.example", "--name", "Dora Tech", "--departments", "Technical Support")
    inst.cli("staff", "add", "bill@helpdesk.example", "--name", "Bill Money", "--departments", "Billing")
    for user in ("ada", "dora", "bill"):
        inst.cli("staff", "passwd", user, input=f"{PASSWORD}\n".encode())
    first = make_mail(subject="Printer on fire", body="The quokka printer in room 4 is burning.\n")
    tech = ingest(inst, first)["ticket"]
    billing = ingest(inst, make_mail(subject="Invoice wrong", body="Invoice 77 charges a wombat fee.\n",
                                     to="billing@helpdesk.example", sender="bob@client.example"))["ticket"]
    with serving(inst) as port:
        relay.wait_for(2)     # the two clients' new-ticket confirmations, sent by the daemon
        yield Desk(inst, port, tech, billing, first["Message-ID"])


def rows(page: str) -> list[str]:
    """The ticket numbers a list page links to (each once, in order)."""
    return list(dict.fromkeys(re.findall(r'href="/tickets/(\d+)"', page)))


def test_the_list_filters_searches_and_keeps_to_the_viewers_departments(desk: Desk):
    ada, dora = desk.browser("ada"), desk.browser("dora")
    status, _, page = ada.request("/tickets")
    assert status == 200 and set(rows(page)) == {desk.tech, desk.billing} and "Awaiting reply (2)" in page
    assert rows(ada.request("/tickets?q=quokka")[2]) == [desk.tech]           # keyword search, both engines' index
    assert rows(ada.request("/tickets?q=wombat+invoice")[2]) == [desk.billing]
    assert rows(ada.request("/tickets?department=Billing")[2]) == [desk.billing]
    assert rows(ada.request("/tickets?status=closed")[2]) == []
    assert rows(ada.request("/tickets?priority=high")[2]) == []
    assert rows(ada.request("/tickets?assigned=none")[2]) != []
    # Dora works in Technical Support only: the billing ticket is nowhere for her, not even as a count.
    status, _, page = dora.request("/tickets?status=all")
    assert status == 200 and rows(page) == [desk.tech] and "Awaiting reply (1)" in page and "Billing" not in page
    assert rows(dora.request("/tickets?q=wombat")[2]) == []
    status, _, page = dora.request("/tickets?department=Billing")
    assert rows(page) == [] and "no department" in page
    assert dora.request(f"/tickets/{desk.billing}")[0] == 404
    assert dora.request(f"/tickets/{desk.tech}")[0] == 200
    # Tags and sort.
    desk.inst.cli("ticket", "set", desk.tech, "--as", "ada", "--tag", "Hardware", "--service", "srv1.example")
    assert rows(ada.request("/tickets?tag=hardware")[2]) == [desk.tech]
    page = ada.request("/tickets?sort=tid&dir=asc")[2]
    assert rows(page) == sorted([desk.tech, desk.billing])
    # Bulk close goes through the desk: each ticket logged, its client told; Dora cannot close Billing's.
    csrf = Browser.csrf(page)
    status, _, page = dora.request("/tickets/close", {"csrf": Browser.csrf(dora.request("/tickets")[2]),
                                                      "tid": [desk.billing]})
    assert status == 409 and "not closed" in page
    status, headers, _ = ada.request("/tickets/close", {"csrf": csrf, "tid": [desk.tech, desk.billing]})
    assert status == 303 and "done=closed-2" in headers["location"]
    assert "Tickets closed: 2." in ada.request(headers["location"])[2]
    assert "notice" not in ada.request("/tickets?done=Call+us+at+555")[2]      # no text of anyone's own
    assert rows(ada.request("/tickets")[2]) == [] and len(rows(ada.request("/tickets?status=closed")[2])) == 2
    assert desk.inst.query("SELECT count(*) AS n FROM ticket_log WHERE event = 'closed' AND actor = 'ada'"
                           )[0]["n"] == 2


def test_a_reply_with_a_file_a_note_and_options_all_through_the_desk(desk: Desk, relay: Relay):
    ada = desk.browser("ada")
    _, _, page = ada.request(f"/tickets/{desk.tech}")
    csrf = Browser.csrf(page)
    assert "The quokka printer" in page and "Alice Client" in page
    # The preview shows the reply as the client would get it, and sends nothing.
    status, _, page = ada.request(f"/tickets/{desk.tech}/reply",
                                  {"csrf": csrf, "body": "Hello [FIRSTNAME], **fixed**", "action": "preview"},
                                  files=[])
    assert status == 200 and "Hello Alice, <strong>fixed</strong>" in page and "**fixed**" in page
    status, headers, page = ada.request(
        f"/tickets/{desk.tech}/reply", {"csrf": csrf, "body": "Hello [FIRSTNAME], the fire is out.",
                                        "status": "Answered", "after": "ticket", "action": "send"},
        files=[("files", "report.png", PNG)])
    assert status == 303, page
    (mail,) = relay.wait_for(3)[2:]
    sent = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert sent["To"].addresses[0].addr_spec == "alice@client.example"
    assert desk.tech_mid in sent["In-Reply-To"] + sent["References"]          # threaded on the client's mail
    assert "Ada Lovelace" in sent["From"].addresses[0].display_name
    assert "Hello Alice, the fire is out." in sent.get_body(("plain",)).get_content()
    assert [p.get_filename() for p in sent.iter_attachments()] == ["report.png"]
    _, _, page = ada.request(headers["location"])
    assert "Reply sent." in page and "Answered" in page
    (file_id,) = re.findall(rf'/tickets/{desk.tech}/files/(\d+)" download', page)
    status, got, body = ada.raw(f"/tickets/{desk.tech}/files/{file_id}")
    assert status == 200 and body == PNG and got["content-disposition"].startswith("attachment;")
    assert got["x-content-type-options"] == "nosniff" and "sandbox" in got["content-security-policy"]
    # A note with a mention: Dora (of the department) gets mail; the client never does.
    status, _, page = ada.request(f"/tickets/{desk.tech}/note", {"csrf": csrf, "body": "@dora and @bill please look"},
                                  files=[])
    assert status == 200 and "not mentioned" in page and "@bill" in page   # Bill is not of the department
    mails = relay.wait_for(4)
    assert [list(m.rcpt_tos) for m in mails[3:]] == [["dora@helpdesk.example"]]
    # The staff mail links to the ticket's page in this web view (and old links of the form /desk/... still work).
    mention = email.message_from_bytes(mails[3].data, policy=email.policy.default).get_body(("plain",)).get_content()
    assert f"http://127.0.0.1:8025/tickets/{desk.tech}\r\n" in mention, mention     # web.public_url + the page
    status, headers, _ = ada.request(f"/desk/tickets/{desk.tech}")
    assert status == 301 and headers["location"] == f"/tickets/{desk.tech}"
    assert "kind-note" in page and "Private note" in page
    # Options: each change logged, the same as from the CLI.
    status, headers, _ = ada.request(f"/tickets/{desk.tech}/options", {
        "csrf": csrf, "subject": "Printer on fire (room 4)", "department": "Technical Support", "status": "In Progress",
        "priority": "High", "assign": "dora", "flag": "", "client": "", "service": "srv1.example",
        "tags": "hardware, fire", "cc_add": "boss@client.example", "seen_status": "Answered"})
    assert status == 303, headers
    shown = desk.inst.cli_json("ticket", "show", desk.tech)
    assert shown["subject"] == "Printer on fire (room 4)" and shown["priority"] == "High"
    assert shown["status"] == "In Progress" and shown["assigned"] == "dora" and shown["tags"] == ["fire", "hardware"]
    assert shown["related_service"] == "srv1.example" and shown["cc"][0]["address"] == "boss@client.example"
    events = [e["event"] for e in shown["log"]]
    assert "assigned" in events and "options_changed" in events and "note" in events and "staff_reply" in events
    # The form sent back unchanged changes nothing and logs nothing.
    action = f"/tickets/{desk.tech}/options"
    drawn = form_values(ada.request(f"/tickets/{desk.tech}")[2], action)
    logged = len(desk.inst.cli_json("ticket", "show", desk.tech)["log"])
    assert drawn["assign"] == "dora" and drawn["tags"] == "fire, hardware" and drawn["seen_priority"] == "High"
    assert ada.request(action, drawn)[0] == 303
    assert len(desk.inst.cli_json("ticket", "show", desk.tech)["log"]) == logged
    # Collision detection. Someone else changes the priority and the assignee after the page was drawn:
    # changing only the tags from that stale page is refused, saying what changed and who changed it; nothing
    # is applied, and the choice is kept, rebased on the ticket as it is now ...
    desk.inst.cli("ticket", "set", desk.tech, "--as", "dora", "--priority", "Low", "--unassign", "--tag", "smoke")
    status, _, page = ada.request(action, {**drawn, "tags": "fire, hardware, urgent"})
    assert status == 409 and "<li>priority: High → Low</li>" in page and "<li>assigned: dora → (none)</li>" in page
    assert desk.inst.cli_json("ticket", "show", desk.tech)["tags"] == ["fire", "hardware", "smoke"]
    kept = form_values(page, action)
    assert kept["tags"] == "fire, hardware, smoke, urgent" and kept["seen_priority"] == "Low"
    # ... sending it again confirms: only what was changed on the form is applied, Dora's changes stay.
    assert ada.request(action, kept)[0] == 303
    shown = desk.inst.cli_json("ticket", "show", desk.tech)
    assert (shown["priority"], shown["assigned"]) == ("Low", None)
    assert shown["tags"] == ["fire", "hardware", "smoke", "urgent"]        # Dora's tag stays too
    # Changing a field someone else changed meanwhile is refused the same way, and confirmed by sending the
    # form again as the ticket is now.
    status, _, page = ada.request(action, {**drawn, "priority": "Medium"})
    assert status == 409 and "The ticket changed while you had it open</strong>, by dora" in page
    assert "<li>priority: High → Low</li>" in page and "Nothing was applied" in page
    assert desk.inst.cli_json("ticket", "show", desk.tech)["priority"] == "Low"
    kept = form_values(page, action)
    assert kept["priority"] == "Medium" and kept["seen_priority"] == "Low" and kept["assign"] == ""
    assert ada.request(action, kept)[0] == 303
    shown = desk.inst.cli_json("ticket", "show", desk.tech)
    assert (shown["priority"], shown["assigned"]) == ("Medium", None)
    # A reply written before the client's answer arrived is refused as well, preview or not.
    reply = form_values(ada.request(f"/tickets/{desk.tech}")[2], f"/tickets/{desk.tech}/reply")
    ingest(desk.inst, make_mail(subject=f"Re: [Ticket #{desk.tech}] Printer on fire", body="Still smoking!\n"))
    status, _, page = ada.request(f"/tickets/{desk.tech}/reply", {**reply, "body": "All good", "action": "preview"},
                                  files=[])
    assert status == 200 and f'name="seen_last_reply_at" value="{reply["seen_last_reply_at"]}"' in page
    status, _, page = ada.request(f"/tickets/{desk.tech}/reply", {**reply, "body": "All good", "action": "send"},
                                  files=[])
    assert status == 409 and "The ticket changed while you had it open" in page and "All good</textarea>" in page
    assert "<li>last reply at:" in page and "alice@client.example" in page.split('class="conflict"')[1][:400]
    # The page it comes back on is drawn as the ticket is now: sending from it works.
    again = form_values(page, f"/tickets/{desk.tech}/reply")
    assert "All good</textarea>" in page and again["seen_last_reply_at"] != reply["seen_last_reply_at"]
    status, _, _ = ada.request(f"/tickets/{desk.tech}/reply", {**again, "body": "All good", "action": "send"},
                               files=[])
    assert status == 303
    # Odd input answers plainly, never with a 500.
    assert ada.request(f"/tickets/{desk.tech}?insert=%C2%B2")[0] == 200          # "²", a digit to str.isdigit
    assert ada.request(f"/tickets/{desk.tech}?quote=99999999999999999999999")[0] == 200
    assert ada.request("/predefined?edit=99999999999999999999")[0] == 200
    assert ada.request(f"/tickets/{desk.tech}/files/9999999999999999999999")[0] == 404
    # Watch and unwatch.
    assert ada.request(f"/tickets/{desk.tech}/watch", {"csrf": csrf, "on": "1"})[0] == 303
    assert "Unwatch ticket" in ada.request(f"/tickets/{desk.tech}")[2]
    # A department-limited member: another department's page, file and actions are all 404.
    bill = desk.browser("bill")
    bill_csrf = Browser.csrf(bill.request("/tickets")[2])
    assert bill.request(f"/tickets/{desk.tech}")[0] == 404
    assert bill.raw(f"/tickets/{desk.tech}/files/{file_id}")[0] == 404
    assert bill.raw(f"/tickets/{desk.billing}/files/{file_id}")[0] == 404      # not that ticket's file
    for action in ("reply", "note", "options", "watch"):
        status, _, _ = bill.request(f"/tickets/{desk.tech}/{action}", {"csrf": bill_csrf, "body": "x", "on": "1"})
        assert status == 404, action


def post_routes(inst: Instance, client: bool = False) -> list[str]:
    """Every POST route of the web application's staff side (``client``: of the client pages, under
    /client/), read from the application itself (so a form added later is in a test without anyone
    remembering to add it)."""
    from maild import config
    from maild.app import App
    from maild.web.app import build

    asgi = build(App(config.load(inst.config)))
    return sorted(re.sub(r":\w+}", "}", r.path) for r in asgi.app.routes
                  if "POST" in (getattr(r, "methods", None) or ()) and r.path.startswith("/client/") == client)


def test_every_form_refuses_a_missing_or_wrong_csrf_token(desk: Desk):
    inst = desk.inst
    blocked = ingest(inst, make_mail(subject=f"Re: [Ticket #{desk.tech}] x", sender="mallory@evil.example"))
    assert blocked["outcome"] == "blocked"
    entry = str(inst.cli_json("import-log", "--outcome", "blocked")["items"][0]["id"])
    inst.cli("predefined", "add", "Hello", "--body-file", "-", input=b"Hello there\n")
    reply_id = str(inst.cli_json("predefined", "list")["items"][0]["id"])
    message = str(inst.cli_json("ticket", "show", desk.tech)["messages"][0]["id"])
    values = {"tid": desk.tech, "log_id": entry, "outbox_id": "1", "reply_id": reply_id, "message_id": message}
    forms = {"/tickets/close": {"tid": desk.tech}, "/tickets/merge": {"tid": [desk.tech, desk.billing]},
             "/tickets/{tid}/merge": {"others": desk.billing}, "/tickets/{tid}/split": {"message": "1"},
             "/tickets/delete": {"tid": desk.tech, "confirm": "1"},
             "/tickets/{tid}/messages/{message_id}/edit": {"body": "forged"},
             "/tickets/{tid}/messages/{message_id}/delete": {"confirm": "1"},
             "/tickets/new": {"department": "Billing", "email": "x@client.example", "subject": "Forged", "body": "x"},
             "/tickets/{tid}/reply": {"body": "forged reply", "action": "send"},
             "/tickets/{tid}/note": {"body": "forged note"}, "/tickets/{tid}/options": {"priority": "Low"},
             "/tickets/{tid}/watch": {"on": "1"}, "/tickets/{tid}/links/revoke": {},
             "/import-log/{log_id}/import": {"ticket": desk.tech, "kind": "note"},
             "/import-log/{log_id}/reprocess": {}, "/outbox/{outbox_id}/retry": {},
             "/predefined": {"title": "Forged", "body": "x"}, "/predefined/{reply_id}": {"action": "delete"},
             "/login": {"username": "ada", "password": PASSWORD}, "/logout": {}}
    assert sorted(forms) == post_routes(inst)            # every form of the application is tried
    ada = desk.browser("ada")
    state = lambda: (inst.cli_json("ticket", "list", "--all"), inst.cli_json("ticket", "show", desk.tech),  # noqa: E731
                     inst.cli_json("predefined", "list"),
                     inst.cli_json("import-log", "show", entry), inst.cli_json("outbox", "list"))
    before = state()
    for template, form in forms.items():
        path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)
        for token in (None, "wrong", ""):
            sent = dict(form) if token is None else {**form, "csrf": token}
            status, _, page = ada.request(path, sent)
            assert status == 403, (path, token, status, page[:300])
    assert state() == before
    assert ada.request("/tickets")[0] == 200     # still signed in


def test_html_mail_renders_inert_and_remote_images_wait_to_be_asked_for(desk: Desk):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Mallory <mallory@client.example>", "support@helpdesk.example", "Look"
    msg.set_content("plain part")
    msg.add_alternative(
        '<html><head><style>body{background:url(http://evil.example/bg)}</style></head><body>'
        '<p onclick="steal()" style="width: expression(alert(1))">Hello <b>there</b></p>'
        '<script>alert("x")</script><a href="javascript:alert(1)">click</a>'
        '<img src="http://tracker.example/pixel.gif" onerror="alert(2)"><img src="cid:logo@x">'
        '<iframe src="http://evil.example/"></iframe><form action="http://evil.example/"><input name=a></form>'
        '<svg><script>alert(3)</script></svg></body></html>', subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@x>")
    tid = ingest(desk.inst, msg)["ticket"]
    ada = desk.browser("ada")
    status, headers, page = ada.request(f"/tickets/{tid}")
    assert status == 200 and "Hello <b>there</b>" in page
    body = page.split('id="thread-h"')[1]
    for bad in ("<script", "onclick", "onerror", "expression(", "javascript:", "<iframe", "<form action=\"http",
                "tracker.example", "<style", "<svg"):
        assert bad not in body, bad
    assert "1 remote image blocked" in page
    (cid_src,) = re.findall(rf'src="(/tickets/{tid}/files/\d+\?inline=1)"', body)[:1]
    status, got, data = ada.raw(cid_src)
    assert status == 200 and data == PNG and got["content-type"] == "image/png"
    assert got["content-disposition"].startswith("inline;")
    assert "img-src 'self' data:;" in headers["content-security-policy"]
    status, headers, page = ada.request(f"/tickets/{tid}?images=1")
    assert "http://tracker.example/pixel.gif" in page and "onerror" not in page.split('id="thread-h"')[1]
    assert "img-src 'self' data: https: http:" in headers["content-security-policy"]
