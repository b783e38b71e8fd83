"""The client's pages over real HTTP (issue 13, point 5): the link in client mail (per ticket and per
recipient) opens the ticket and nothing else of anyone's; tampered, expired and revoked links are refused
(the clock is the app's, driven by the test); a merged-away ticket's link leads to the merged ticket for its
own recipients only; reply with a file, close, rate, feedback and a new ticket, each through the desk."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.clock import Clock
from maild.config import Listen
from maild.desk.core import StoredFile
from maild.desk.events import Actor
from maild.store import outbox, people, tickets
from maild.store.blobs import BlobSpec
from maild.web.app import build
from maild.web.server import WebServer
from tests.helpers import Instance, process_mail
from tests.test_web_desk import post_routes
from tests.webclient import PASSWORD, Browser

pytestmark = pytest.mark.both_engines
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
AGENT = Actor(kind="staff", email="agent@helpdesk.example", name="Agent Smith", username="agent", staff_id=1,
              is_admin=True)   # the first staff member the fixture adds
LINK = re.compile(r"/c/([A-Za-z0-9_-]{32})(/feedback)?(?![A-Za-z0-9_-])")
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


@dataclass
class Site:
    app: App
    now: list[datetime]
    port: int
    inst: Instance

    def at(self, when: datetime) -> None:
        self.now[0] = when

    async def get(self, browser: Browser, path: str, form: dict | None = None,
                  files: list[tuple[str, str, bytes]] | None = None) -> tuple[int, dict[str, str], str]:
        return await asyncio.to_thread(browser.request, path, form, files)

    async def mail_in(self, subject: str, sender: str, reply_to: str = "", body: str = "", html: str = "") -> str:
        tid = await process_mail(self.app, subject, sender, reply_to=reply_to, body=body, html=html)
        await self.app.notifier.expand()
        return tid

    async def links(self, recipient: str, event: str | None = None) -> list[str]:
        """The paths of the client links in the mail queued for ``recipient`` (newest last)."""
        assert self.app.db is not None
        await self.app.notifier.expand()
        found = []
        for row in sorted(await outbox.listing(self.app.db, None, None), key=lambda r: r.id):
            if row.recipient != recipient or (event and row.event != event):
                continue
            full = await outbox.get(self.app.db, row.id)
            assert full is not None
            msg = email.message_from_bytes(full.raw, policy=email.policy.default)
            text = msg.get_body(("plain",)).get_content()   # type: ignore[union-attr]
            found += [m.group(0) for m in LINK.finditer(text)]
        return found

    async def link(self, recipient: str, event: str | None = None) -> str:
        found = await self.links(recipient, event)
        assert found, (f"no client link in the mail to {recipient}",
                       [(r.recipient, r.event) for r in await outbox.listing(self.app.db, None, None)])
        return found[-1]

    async def visit(self, path: str) -> tuple[Browser, int, dict[str, str]]:
        """A fresh browser following the link: (the browser, the link's status, its headers)."""
        browser = Browser(self.port)
        status, headers, _ = await self.get(browser, path)
        return browser, status, headers

    async def ticket(self, tid: str) -> tickets.Ticket:
        assert self.app.db is not None
        found = await tickets.by_tid(self.app.db, tid)
        assert found is not None
        return found


@pytest.fixture
async def site(tmp_path: Path, database_url: str) -> AsyncIterator[Site]:
    async with serving_app(tmp_path, database_url) as running:
        yield running


@asynccontextmanager
async def serving_app(tmp_path: Path, database_url: str, extra_config: str = "", rate_limit: int = 0
                      ) -> AsyncIterator[Site]:
    """The App in this process, on the test's clock, with its web view on a free port."""
    inst = Instance(tmp_path, database_url=database_url, extra_config=extra_config, rate_limit=rate_limit)
    inst.cli("staff", "add", "agent@helpdesk.example", "--name", "Agent Smith", "--admin")
    inst.cli("staff", "passwd", "agent", input=f"{PASSWORD}\n".encode())
    inst.cli("staff", "add", "dora@helpdesk.example", "--name", "Dora Tech", "--departments", "Technical Support",
             "--notify", "Technical Support")
    settings = config.load(inst.config)
    now = [T0]
    async with App(settings, clock=Clock(lambda: now[0])) as app:
        server = WebServer(build(app), Listen("127.0.0.1", 0))
        port = await server.start()
        try:
            yield Site(app, now, port, inst)
        finally:
            await server.stop()


async def files_of(site: Site, name: str, data: bytes) -> list[StoredFile]:
    from maild.desk import uploads

    return await asyncio.to_thread(uploads.store, BlobSpec.from_settings(site.app.settings).open(), [(name, data)])


async def test_a_link_opens_its_ticket_and_nothing_else(site: Site, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    alice = await site.mail_in("Printer on fire", "alice@client.example")
    bob = await site.mail_in("Invoice wrong", "bob@client.example")
    await site.app.desk.reply(AGENT, alice, "The fire is out.", await files_of(site, "report.png", PNG))
    await site.app.desk.note(AGENT, alice, "SECRET-NOTE: alice owes us money", files=await files_of(
        site, "internal.txt", b"internal numbers"))
    await site.app.desk.reply(AGENT, bob, "Invoice fixed.", await files_of(site, "bob.txt", b"bob's invoice"))
    path = await site.link("alice@client.example", "admin_reply")
    browser, status, headers = await site.visit(path)
    assert status == 303 and headers["location"] == f"/client/tickets/{alice}"
    assert headers["referrer-policy"] == "no-referrer" and "HttpOnly" in headers["set-cookie"]
    status, headers, page = await site.get(browser, f"/client/tickets/{alice}")
    assert status == 200 and headers["referrer-policy"] == "no-referrer"
    assert "The fire is out." in page and "Agent Smith" in page and "About Printer on fire." in page
    assert "SECRET-NOTE" not in page and "internal.txt" not in page
    assert "agent@helpdesk" not in page and ">agent<" not in page         # never the staff address or username
    (own_file,) = re.findall(rf'/client/tickets/{alice}/files/(\d+)"', page)
    status, headers, _ = await site.get(browser, f"/client/tickets/{alice}/files/{own_file}")
    assert status == 200 and headers["content-disposition"].startswith("attachment;")
    assert site.app.db is not None
    ids = {r["filename"]: r["id"] for r in await site.app.db.fetchall("SELECT id, filename FROM attachments")}
    # The note's file, and Bob's ticket, its page and its file: as if they did not exist.
    assert (await site.get(browser, f"/client/tickets/{alice}/files/{ids['internal.txt']}"))[0] == 404
    assert (await site.get(browser, f"/client/tickets/{alice}/files/{ids['bob.txt']}"))[0] == 404
    assert (await site.get(browser, f"/client/tickets/{bob}/files/{ids['bob.txt']}"))[0] == 404
    status, _, page = await site.get(browser, f"/client/tickets/{bob}")
    assert status == 404 and "Invoice" not in page
    status, _, page = await site.get(browser, "/client/tickets")
    assert status == 200 and alice in page and bob not in page
    # The staff pages know nothing of a client's session.
    for staff_page in ("/tickets", f"/tickets/{alice}", "/import-log", "/outbox"):
        status, headers, _ = await site.get(browser, staff_page)
        assert status == 303 and headers["location"].startswith("/login"), staff_page
    # A POST without the session's token changes nothing.
    status, _, _ = await site.get(browser, f"/client/tickets/{alice}/close", {"csrf": "forged"})
    assert status == 403 and (await site.ticket(alice)).status == "Answered"
    # The key never goes into a log line.
    key = path.split("/")[2]
    assert not [r for r in caplog.records if key in r.getMessage() or key in str(getattr(r, "kv", ""))]


async def test_tampered_expired_and_revoked_links_are_refused(site: Site):
    tid = await site.mail_in("Slow site", "carol@client.example")
    path = await site.link("carol@client.example")
    key = path.split("/")[2]
    tampered = "/c/" + ("A" if key[0] != "A" else "B") + key[1:]
    assert (await site.visit(tampered))[1] == 404
    assert (await site.visit("/c/short"))[1] == 404
    nobody = Browser(site.port)
    assert (await site.get(nobody, f"/client/tickets/{tid}"))[0] == 401
    # Expired: [web] client_link_days (60) after the mail.
    browser, status, _ = await site.visit(path)
    assert status == 303 and (await site.get(browser, f"/client/tickets/{tid}"))[0] == 200
    site.at(T0 + timedelta(days=60, seconds=1))
    assert (await site.get(browser, f"/client/tickets/{tid}"))[0] == 401   # the session ends with its link
    assert (await site.visit(path))[1] == 404
    # A new mail brings a new link; revoking it (staff, through the desk) stops it and its session at once.
    await site.app.desk.reply(AGENT, tid, "Try again now.")
    fresh = await site.link("carol@client.example", "admin_reply")
    browser, status, _ = await site.visit(fresh)
    assert status == 303 and (await site.get(browser, f"/client/tickets/{tid}"))[0] == 200
    result = await site.app.desk.revoke_links(AGENT, tid, "Carol@Client.example")
    assert result.notes == [f"revoked the links of carol@client.example on #{tid}"]
    assert (await site.get(browser, f"/client/tickets/{tid}"))[0] == 401
    status, _, _ = await site.get(browser, f"/client/tickets/{tid}/reply", {"csrf": "x", "body": "hello?"})
    assert status == 401 and (await site.ticket(tid)).status == "Answered"
    assert (await site.visit(fresh))[1] == 404
    assert site.app.db is not None
    assert await site.app.db.scalar("SELECT count(*) FROM ticket_log WHERE event = 'links_revoked'") == 1
    # Revoking needs the department: a staff member of another department is refused.
    with pytest.raises(Exception, match="does not work in"):
        await site.app.desk.revoke_links(Actor(kind="staff", email="x@helpdesk.example", username="x", staff_id=999),
                                         tid)


async def test_a_merged_away_tickets_link_leads_to_the_merged_ticket_for_its_own_people_only(site: Site):
    older = await site.mail_in("Mail down", "dan@client.example")
    site.at(T0 + timedelta(hours=1))
    newer = await site.mail_in("Mail still down", "erin@client.example")
    other = await site.mail_in("Unrelated", "finn@client.example")
    erin_link = await site.link("erin@client.example")
    finn_link = await site.link("finn@client.example")
    await site.app.desk.merge(AGENT, [older, newer])
    erin, status, headers = await site.visit(erin_link)
    assert status == 303 and headers["location"] == f"/client/tickets/{older}"
    status, _, page = await site.get(erin, f"/client/tickets/{older}")
    assert status == 200 and "Mail still down" in page and "About Mail down." in page
    status, headers, _ = await site.get(erin, f"/client/tickets/{newer}")   # the old number follows the merge
    assert status == 303 and headers["location"] == f"/client/tickets/{older}"
    finn, status, _ = await site.visit(finn_link)
    assert status == 303
    for tid in (older, newer):   # another ticket's recipient reaches neither number
        assert (await site.get(finn, f"/client/tickets/{tid}"))[0] == 404
    assert (await site.get(finn, f"/client/tickets/{other}"))[0] == 200


async def test_reply_with_a_file_close_rate_and_feedback_through_the_desk(site: Site):
    tid = await site.mail_in("VPN drops", "gus@client.example")
    reply = await site.app.desk.reply(AGENT, tid, "Update the client, please.")
    browser, status, _ = await site.visit(await site.link("gus@client.example", "admin_reply"))
    _, _, page = await site.get(browser, f"/client/tickets/{tid}")
    csrf = Browser.csrf(page)
    assert f"/client/tickets/{tid}/messages/{reply.message_id}/rate" in page
    # Reply with a file: Customer-Reply ("Client Reply" to the client), staff told as for a reply by mail.
    status, headers, page = await site.get(browser, f"/client/tickets/{tid}/reply",
                                           {"csrf": csrf, "body": "Still drops every hour."},
                                           files=[("file", "vpn.log", b"drop at 10:00\n")])
    assert status == 303, page
    status, _, page = await site.get(browser, headers["location"])
    assert "Your reply was sent." in page and "Still drops every hour." in page and "vpn.log" in page
    assert "Client Reply" in page and (await site.ticket(tid)).status == "Customer-Reply"
    assert site.app.db is not None
    (row,) = await site.app.db.fetchall("SELECT m.badge, m.author_email FROM messages m JOIN tickets t"
                                        " ON t.id = m.ticket_id WHERE t.tid = ? AND m.body LIKE 'Still%'", (tid,))
    assert (row["badge"], row["author_email"]) == ("Guest", "gus@client.example")
    assert await site.app.db.scalar("SELECT count(*) FROM notify_queue") == 0
    assert [r.recipient for r in await outbox.listing(site.app.db, None, None)
            if r.event == "client_reply"] == ["dora@helpdesk.example"]   # her department's reply, by mail
    # An empty reply is refused and nothing changes.
    status, _, page = await site.get(browser, f"/client/tickets/{tid}/reply", {"csrf": csrf, "body": "  "},
                                     files=[])
    assert status == 422 and "empty reply" in page
    # Rate the staff reply: 1-5 only; a later rating replaces the first.
    rate = f"/client/tickets/{tid}/messages/{reply.message_id}/rate"
    assert (await site.get(browser, rate, {"csrf": csrf, "rating": "6"}))[0] == 422
    assert (await site.get(browser, rate, {"csrf": csrf, "rating": "2"}))[0] == 303
    assert (await site.get(browser, rate, {"csrf": csrf, "rating": "5"}))[0] == 303
    assert await site.app.db.scalar("SELECT rating FROM reply_ratings WHERE message_id = ?", (reply.message_id,)) == 5
    (client_msg,) = await site.app.db.fetchall("SELECT id FROM messages WHERE body LIKE 'Still%'")
    status, _, _ = await site.get(browser, f"/client/tickets/{tid}/messages/{client_msg['id']}/rate",
                                  {"csrf": csrf, "rating": "1"})
    assert status == 404   # only staff replies are rated
    _, _, page = await site.get(browser, f"/client/tickets/{tid}")
    assert "You rated this reply 5 of 5." in page
    # Close; then the feedback request's own link opens the form.
    assert (await site.get(browser, f"/client/tickets/{tid}/close", {"csrf": csrf}))[0] == 303
    closed = await site.ticket(tid)
    assert closed.status == "Closed"
    site.at(T0 + timedelta(hours=2))
    asked = await site.app.desk.request_feedback([closed.id], list(site.app.departments.values()),
                                                 "", site.app.clock.stamp())
    assert asked == [closed.id]
    feedback_link = await site.link("gus@client.example", "feedback_request")
    assert feedback_link.endswith("/feedback")
    browser, status, headers = await site.visit(feedback_link)
    assert status == 303 and headers["location"] == f"/client/tickets/{tid}/feedback"
    _, _, page = await site.get(browser, headers["location"])
    assert "How did we do?" in page
    csrf = Browser.csrf(page)
    form = {"csrf": csrf, "rating": "9", "comment": "Quick and kind."}
    status, _, page = await site.get(browser, f"/client/tickets/{tid}/feedback", {**form, "comment": "x" * 5001})
    assert status == 422 and "the comment is 5,001 characters long" in page
    assert (await site.get(browser, f"/client/tickets/{tid}/feedback", form))[0] == 303
    status, _, page = await site.get(browser, f"/client/tickets/{tid}/feedback", {**form, "rating": "1"})
    assert status == 422 and "answered already" in page
    row = await site.app.db.fetchone("SELECT rating, comment FROM feedback WHERE ticket_id = ?", (closed.id,))
    assert row is not None and (row["rating"], row["comment"]) == (9, "Quick and kind.")


async def test_the_list_is_the_accounts_and_a_new_ticket_opens_from_it(site: Site):
    assert site.app.db is not None
    async with site.app.db.transaction():
        for email_, role in (("owner@acme.example", "owner"), ("kim@acme.example", "contact"),
                             ("lee@acme.example", "contact")):
            await people.add_person(site.app.db, "Acme", email_, email_.split("@")[0].title(), role,
                                    site.app.clock.stamp())
    kims = await site.mail_in("Kim's problem", "kim@acme.example")
    lees = await site.mail_in("Lee's problem", "lee@acme.example")
    await site.mail_in("Not Acme", "zed@other.example")
    await site.app.desk.reply(AGENT, kims, "Looking into it.")
    owner_path = (await site.app.desk.set_options(AGENT, kims, _options(cc_add=("owner@acme.example",))))
    assert owner_path.tid == kims
    await site.app.desk.reply(AGENT, kims, "Owner, see this.")
    owner, status, _ = await site.visit(await site.link("owner@acme.example", "admin_reply"))
    assert status == 303
    _, _, page = await site.get(owner, "/client/tickets")
    listed = re.findall(r'href="/client/tickets/(\d+)"', page)
    assert set(listed) == {kims, lees} and "Not Acme" not in page      # the account's, its contacts' among them
    assert "status-answered" in page and "status-open" in page
    kim, _, _ = await site.visit(await site.link("kim@acme.example", "admin_reply"))
    _, _, page = await site.get(kim, "/client/tickets")
    assert set(re.findall(r'href="/client/tickets/(\d+)"', page)) == {kims}   # a contact: their own
    assert (await site.get(kim, f"/client/tickets/{lees}"))[0] == 404
    # New Ticket: department, subject, message and a file; the client is the session's recipient.
    _, _, page = await site.get(kim, "/client/tickets/create")
    status, headers, page = await site.get(kim, "/client/tickets/create",
                                           {"csrf": Browser.csrf(page), "department": "Technical Support",
                                            "subject": "Scanner jams", "body": "Page 3 jams."},
                                           files=[("file", "jam.png", PNG)])
    assert status == 303, page
    new_tid = headers["location"].split("/")[3].split("?")[0]
    new = await site.ticket(new_tid)
    assert (new.client_email, new.subject, new.department, new.client_id) == (
        "kim@acme.example", "Scanner jams", "Technical Support", (await site.ticket(kims)).client_id)
    _, _, page = await site.get(kim, headers["location"])
    assert "Your ticket is open." in page and "jam.png" in page and "Sub-account" not in page
    assert await site.link("kim@acme.example", "ticket_opened")    # the confirmation, with its own link
    status, _, page = await site.get(kim, "/client/tickets/create",
                                     {"csrf": Browser.csrf(page), "department": "Nowhere", "subject": "x",
                                      "body": "y"}, files=[])
    assert status == 404 and "no department" in page


async def test_every_client_form_refuses_a_missing_or_wrong_csrf_token(site: Site):
    tid = await site.mail_in("Disk full", "hal@client.example")
    reply = await site.app.desk.reply(AGENT, tid, "Clean /tmp.")
    browser, status, _ = await site.visit(await site.link("hal@client.example", "admin_reply"))
    assert status == 303
    values = {"tid": tid, "message_id": str(reply.message_id)}
    forms = {"/client/tickets/create": {"department": "Technical Support", "subject": "Forged", "body": "x"},
             "/client/tickets/{tid}/reply": {"body": "forged"}, "/client/tickets/{tid}/close": {},
             "/client/tickets/{tid}/messages/{message_id}/rate": {"rating": "1"},
             "/client/tickets/{tid}/feedback": {"rating": "1", "comment": "forged"}, "/client/logout": {}}
    assert sorted(forms) == post_routes(site.inst, client=True)   # every client form is tried
    assert site.app.db is not None
    state = "SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM tickets) AS t," \
            " (SELECT count(*) FROM reply_ratings) AS r, (SELECT status FROM tickets WHERE tid = ?) AS s"
    before = await site.app.db.fetchall(state, (tid,))
    for template, form in forms.items():
        path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)
        for token in (None, "wrong", ""):
            sent = dict(form) if token is None else {**form, "csrf": token}
            status, _, page = await site.get(browser, path, sent)
            assert status == 403, (path, token, status, page[:300])
    assert await site.app.db.fetchall(state, (tid,)) == before
    assert (await site.get(browser, f"/client/tickets/{tid}"))[0] == 200    # the session lives on


async def test_staff_see_ratings_and_revoke_a_recipients_links_from_the_ticket_page(site: Site):
    tid = await site.mail_in("Backup failed", "ivy@client.example")
    await site.app.desk.set_options(AGENT, tid, _options(cc_add=("jon@client.example",)))
    reply = await site.app.desk.reply(AGENT, tid, "Restarted the job.")
    ivy_path = await site.link("ivy@client.example", "admin_reply")
    jon_path = await site.link("jon@client.example", "admin_reply")
    assert ivy_path != jon_path   # one message for both (threading), each copy with its recipient's own link
    assert site.app.db is not None
    copies = [email.message_from_bytes(full.raw, policy=email.policy.default) for r in
              await outbox.listing(site.app.db, None, None) if r.event == "admin_reply"
              for full in [await outbox.get(site.app.db, r.id)] if full is not None]
    assert len(copies) == 2 and len({(m["Message-ID"], m["Date"], m["To"], m["Cc"]) for m in copies}) == 1
    ivy, _, _ = await site.visit(ivy_path)
    jon, _, _ = await site.visit(jon_path)
    _, _, page = await site.get(ivy, f"/client/tickets/{tid}")
    assert (await site.get(ivy, f"/client/tickets/{tid}/messages/{reply.message_id}/rate",
                           {"csrf": Browser.csrf(page), "rating": "4"}))[0] == 303
    staff = Browser(site.port)
    assert (await asyncio.to_thread(staff.sign_in, "agent"))[0] == 303
    _, _, page = await site.get(staff, f"/tickets/{tid}")
    assert "rated 4 of 5" in page and "ivy@client.example" in page and "jon@client.example" in page
    status, headers, _ = await site.get(staff, f"/tickets/{tid}/links/revoke",
                                        {"csrf": Browser.csrf(page), "recipient": "jon@client.example"})
    assert status == 303 and "done=revoked" in headers["location"]
    assert (await site.get(jon, f"/client/tickets/{tid}"))[0] == 401     # Jon's links and session: gone
    assert (await site.get(ivy, f"/client/tickets/{tid}"))[0] == 200     # Ivy's: untouched
    _, _, page = await site.get(staff, headers["location"])
    assert "Client links revoked." in page and "by agent" in page
    # The CLI shows the same, and revokes the rest.
    listed = {r["recipient"]: r for r in site.inst.cli_json("ticket", "links", tid)["links"]}
    assert listed["jon@client.example"]["live"] == 0 and listed["ivy@client.example"]["live"] >= 1
    site.inst.cli("ticket", "revoke-links", tid, "--as", "agent")
    assert (await site.get(ivy, f"/client/tickets/{tid}"))[0] == 401
    shown = site.inst.cli_json("ticket", "show", tid)
    assert [m["rating"] for m in shown["messages"] if m["kind"] == "staff_reply"] == [4]


async def test_with_reply_ratings_off_there_are_no_stars_and_no_rating(tmp_path: Path, database_url: str):
    async with serving_app(tmp_path, database_url, "\n[feedback]\nreply_ratings = false\n") as site:
        tid = await site.mail_in("Fan noise", "kay@client.example")
        reply = await site.app.desk.reply(AGENT, tid, "Dust it.")
        browser, _, _ = await site.visit(await site.link("kay@client.example", "admin_reply"))
        _, _, page = await site.get(browser, f"/client/tickets/{tid}")
        assert "Dust it." in page and "/rate" not in page and "Rate this reply" not in page
        status, _, page = await site.get(browser, f"/client/tickets/{tid}/messages/{reply.message_id}/rate",
                                         {"csrf": Browser.csrf(page), "rating": "5"})
        assert status == 403 and "turned off" in page
        assert site.app.db is not None and await site.app.db.scalar("SELECT count(*) FROM reply_ratings") == 0
        assert (await site.visit("/t/123456/oldkey"))[1] == 404   # a link from before client links: explained


async def test_a_link_quoted_back_in_a_reply_is_kept_and_shown_without_its_key(site: Site):
    tid = await site.mail_in("Mail bounces", "lou@client.example")
    await site.app.desk.set_options(AGENT, tid, _options(cc_add=("max@client.example",)))
    await site.app.desk.reply(AGENT, tid, "Which address?")
    lou_path = await site.link("lou@client.example", "admin_reply")
    key = lou_path.split("/")[2]
    url = f"http://127.0.0.1:8025{lou_path}"
    wrapped = "https://eur01.safelinks.protection.outlook.com/?url=" + url.replace(":", "%3A").replace("/", "%2F")
    quoted = f"This one.\n\n> Which address?\n> {url}\n"
    html = (f'<p>This one.</p><blockquote>Which address? <a href="{url}">{url}</a>'
            f' <a href="{wrapped}">x</a></blockquote>')
    await site.mail_in(f"Re: [Ticket #{tid}] Mail bounces", "lou@client.example", body=quoted, html=html)
    assert site.app.db is not None
    for row in await site.app.db.fetchall("SELECT body, body_full, body_html FROM messages"):
        assert key not in str(dict(row)) and key.lower() not in str(dict(row)).lower()
    max_browser, _, _ = await site.visit(await site.link("max@client.example", "admin_reply"))
    _, _, page = await site.get(max_browser, f"/client/tickets/{tid}")
    assert "This one." in page and key not in page
    assert (await site.visit(lou_path))[1] == 303     # Lou's own link still works: only the copy was taken out


async def test_revoking_one_recipients_links_covers_all_their_tickets(site: Site):
    first = await site.mail_in("First problem", "nia@client.example")
    second = await site.mail_in("Second problem", "nia@client.example")
    browser, _, _ = await site.visit(await site.link("nia@client.example"))
    assert (await site.get(browser, f"/client/tickets/{first}"))[0] == 200
    assert (await site.get(browser, f"/client/tickets/{second}"))[0] == 200
    result = await site.app.desk.revoke_links(AGENT, first, "nia@client.example")
    assert result.notes == [f"revoked the links of nia@client.example on #{first}"]
    for tid in (first, second):   # the session came from the second ticket's link: it ends too
        assert (await site.get(browser, f"/client/tickets/{tid}"))[0] == 401
    for path in await site.links("nia@client.example"):
        assert (await site.visit(path))[1] == 404


async def test_a_banned_sender_loses_the_pages_and_a_non_requester_cannot_answer_feedback(site: Site):
    tid = await site.mail_in("Spam offer", "ola@client.example")
    keep = await site.mail_in("Real question", "ola@client.example")
    other = await site.mail_in("Shared problem", "pia@client.example")
    await site.app.desk.set_options(AGENT, other, _options(cc_add=("ola@client.example",)))
    await site.app.desk.reply(AGENT, other, "Looking.")
    browser, _, _ = await site.visit(await site.link("ola@client.example", "admin_reply"))
    assert (await site.get(browser, f"/client/tickets/{keep}"))[0] == 200
    # Ola, a CC recipient of Pia's ticket, may not answer Pia's feedback request.
    closed = await site.ticket(other)
    await site.app.desk.close(AGENT, other)
    await site.app.desk.request_feedback([closed.id], list(site.app.departments.values()), "",
                                         site.app.clock.stamp())
    _, _, page = await site.get(browser, f"/client/tickets/{other}")
    status, _, page = await site.get(browser, f"/client/tickets/{other}/feedback",
                                     {"csrf": Browser.csrf(page), "rating": "1", "comment": "bad"})
    assert status == 403 and "only they answer it" in page
    # "Block sender & delete" on one ticket: the address's links and sessions end, and the pages refuse it.
    await site.app.desk.delete_tickets(AGENT, [tid], ban_sender=True)
    assert (await site.get(browser, f"/client/tickets/{keep}"))[0] == 401
    for path in await site.links("ola@client.example"):
        assert (await site.visit(path))[1] == 404
    # Banned without the desk (ticketd ban add): a live session is refused all the same.
    pia, status, _ = await site.visit(await site.link("pia@client.example", "admin_reply"))
    assert status == 303 and (await site.get(pia, f"/client/tickets/{other}"))[0] == 200
    site.inst.cli("ban", "add", "pia@client.example")
    status, _, page = await site.get(pia, f"/client/tickets/{other}")
    assert status == 403 and "may not use these pages" in page


async def test_too_long_input_is_refused_with_the_draft_kept_and_new_tickets_are_rate_limited(
        tmp_path: Path, database_url: str):
    async with serving_app(tmp_path, database_url, rate_limit=2) as site:
        await site.mail_in("One", "quin@client.example")
        browser, _, _ = await site.visit(await site.link("quin@client.example"))
        _, _, page = await site.get(browser, "/client/tickets/create")
        csrf = Browser.csrf(page)
        form = {"csrf": csrf, "department": "Technical Support", "subject": "S" * 301, "body": "kept text"}
        status, _, page = await site.get(browser, "/client/tickets/create", form, files=[])
        assert status == 422 and "the subject is 301 characters long" in page and "kept text</textarea>" in page
        assert (await site.get(browser, "/client/tickets/create", {**form, "subject": "Two"}, files=[]))[0] == 303
        status, _, page = await site.get(browser, "/client/tickets/create", {**form, "subject": "Three"}, files=[])
        assert status == 403 and "opened 2 tickets in the last" in page


async def test_a_client_at_an_internationalised_domain_can_use_their_link(site: Site):
    tid = await site.mail_in("Umlaut domain", "ann@exämple.net")
    assert (await site.ticket(tid)).client_email == "ann@exämple.net"
    path = await site.link("ann@xn--exmple-cua.net")       # the mail went out with the domain in IDNA
    browser, status, headers = await site.visit(path)
    assert status == 303 and headers["location"] == f"/client/tickets/{tid}"
    status, _, page = await site.get(browser, "/client/tickets")
    assert status == 200 and f"/client/tickets/{tid}" in page


async def test_a_reply_from_the_pages_gets_the_badge_a_mail_would(site: Site):
    """As the pipeline badges mail: on a ticket of no account, an account's owner copied on it is a
    Registered User (their account is not the ticket's), and the ticket stays without an account."""
    assert site.app.db is not None
    async with site.app.db.transaction():
        await people.add_person(site.app.db, "Acme", "rita@acme.example", "Rita", "owner", site.app.clock.stamp())
    tid = await site.mail_in("Printer jam", "guest@elsewhere.example")
    await site.app.desk.set_options(AGENT, tid, _options(cc_add=("rita@acme.example",)))
    await site.app.desk.reply(AGENT, tid, "Which tray?")
    rita, _, _ = await site.visit(await site.link("rita@acme.example", "admin_reply"))
    _, _, page = await site.get(rita, f"/client/tickets/{tid}")
    assert (await site.get(rita, f"/client/tickets/{tid}/reply", {"csrf": Browser.csrf(page), "body": "Tray 2."},
                           files=[]))[0] == 303
    row = await site.app.db.fetchone("SELECT badge, author_name FROM messages WHERE body = 'Tray 2.'")
    assert row is not None and (row["badge"], row["author_name"]) == ("Registered User", "Rita")
    assert (await site.ticket(tid)).client_id is None


def _options(**kw: object):
    from maild.desk.options import Options

    return Options(**kw)  # type: ignore[arg-type]
