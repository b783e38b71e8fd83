"""Ticket surgery and collision prompts end to end in a real headless Chromium (Debian's, driven by Playwright),
against the real daemon: client mail comes in through its SMTP listener, ticketd's mail goes out to the test
relay. Merge two tickets from the list (the old number's page and mail lead to the merged ticket); split a
reply with its attachment off into a new ticket; two staff members on one ticket, the second one's stale reply
and options change refused with what changed and by whom, then confirmed. Screenshots: merge.png, split.png
and collision.png under test-artifacts/screenshots/."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

from playwright.sync_api import Browser, Page, expect

from tests.helpers import Instance, make_mail
from tests.relay import Relay
from tests.test_browser import SCREENSHOTS, chromium, sign_in  # noqa: F401  (chromium: the browser fixture)
from tests.test_web import serving
from tests.test_web_admin import staffed
from tests.test_web_desk import PNG


def mail_in(inst: Instance, msg: EmailMessage) -> dict[str, Any]:
    """Send ``msg`` to the daemon's SMTP listener as the client; its import-log outcome (with the ticket's tid)
    once the pipeline has given it one."""
    before = len(inst.query("SELECT id FROM import_log"))
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as smtp:
        assert smtp.send_message(msg) == {}
    inst.wait_outcomes(before + 1)
    rows = inst.query("SELECT l.outcome, l.reason, l.message_id, t.tid FROM import_log l"
                      " LEFT JOIN tickets t ON t.id = l.ticket_id ORDER BY l.id")
    (row,) = [dict(r) for r in rows if r["message_id"] == msg["Message-ID"]]
    return row


def state(inst: Instance, tid: str) -> dict[str, Any]:
    """Ticket ``tid`` as the database holds it (read-only, beside the running daemon): its row, its messages
    oldest first (body, kind, attachment names), its tags and its log's events."""
    (row,) = inst.query("SELECT id, tid, subject, status, priority, merged_into FROM tickets WHERE tid = ?", (tid,))
    ticket = dict(row)
    ticket["messages"] = [
        {"body": m["body"].strip(), "kind": m["kind"],
         "files": [a["filename"] for a in inst.query("SELECT filename FROM attachments WHERE message_id = ?"
                                                     " ORDER BY id", (m["id"],))]}
        for m in inst.query("SELECT id, kind, body FROM messages WHERE ticket_id = ? ORDER BY created_at, id",
                            (row["id"],))]
    ticket["tags"] = [r["tag"] for r in inst.query("SELECT tag FROM ticket_tags WHERE ticket_id = ? ORDER BY tag",
                                                   (row["id"],))]
    ticket["events"] = [r["event"] for r in inst.query("SELECT event FROM ticket_log WHERE ticket_id = ? ORDER BY id",
                                                       (row["id"],))]
    return ticket


def bodies(inst: Instance, tid: str) -> list[str]:
    return [m["body"] for m in state(inst, tid)["messages"]]


def mails_with(relay: Relay, text: str, to: str = "alice@client.example") -> list[email.message.EmailMessage]:
    """The mails the relay got for ``to`` whose text holds ``text``."""
    found = []
    for t in list(relay.transactions):
        if to not in t.rcpt_tos:
            continue
        parsed = email.message_from_bytes(t.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        part = parsed.get_body(("plain",))
        if part is not None and text in cast(email.message.EmailMessage, part).get_content():
            found.append(parsed)
    return found


def wait_mail_with(relay: Relay, text: str, timeout: float = 20) -> email.message.EmailMessage:
    deadline = time.monotonic() + timeout
    while not (found := mails_with(relay, text)):
        assert time.monotonic() < deadline, f"no mail with {text!r} at the relay after {timeout} s"
        time.sleep(0.05)
    assert len(found) == 1, f"{len(found)} mails with {text!r}"
    return found[0]


def open_ticket(page: Page, port: int, tid: str) -> None:
    page.goto(f"http://127.0.0.1:{port}/tickets/{tid}")
    expect(page.locator("h1 .tid")).to_have_text(f"#{tid}")


def test_two_tickets_merge_from_the_list_and_the_old_number_and_mail_lead_to_the_merged_one(
        tmp_path: Path, relay: Relay, chromium: Browser):  # noqa: F811
    inst = staffed(Instance(tmp_path, extra_config=relay.outbound_toml()))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serving(inst) as port:
        first_mail = make_mail(subject="Printer on fire", body="The kestrel printer in room 4 burns.\n")
        first = mail_in(inst, first_mail)
        second_mail = make_mail(subject="Printer still smoking", body="The smoke now reaches the badger office.\n")
        second = mail_in(inst, second_mail)
        other = mail_in(inst, make_mail(subject="Unrelated question", sender="bob@client.example"))
        assert [r["outcome"] for r in (first, second, other)] == ["new_ticket"] * 3
        oldest, newer = first["tid"], second["tid"]
        relay.wait_for(3)                                    # the three new-ticket confirmations
        sent = [email.message_from_bytes(t.data, policy=email.policy.default) for t in relay.transactions]
        (confirmation,) = [m for m in sent if second_mail["Message-ID"] in str(m["In-Reply-To"])]

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        sign_in(page, port, "ada")
        expect(page.locator("h1")).to_have_text("3 tickets")
        page.get_by_label(f"Select ticket #{oldest}").check()
        page.get_by_label(f"Select ticket #{newer}").check()
        page.get_by_role("button", name="Merge selected").click()
        expect(page).to_have_url(re.compile(rf"/tickets/{oldest}\?done=merged"))
        expect(page.locator(".notice")).to_have_text("Tickets merged.")
        expect(page.locator("h1")).to_have_text(f"#{oldest} Printer on fire [MERGED]")
        thread = page.locator("#thread article.message")
        expect(thread).to_have_count(2)
        expect(page.locator("#m1")).to_contain_text("kestrel printer")
        expect(page.locator("#m2")).to_contain_text("badger office")

        # The list shows the merged ticket alone (and the unrelated one, untouched).
        page.goto(f"http://127.0.0.1:{port}/tickets")
        expect(page.locator("h1")).to_have_text("2 tickets")
        expect(page.get_by_role("link", name=f"#{newer}", exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name="Printer on fire [MERGED]")).to_have_count(1)

        # The old number's page is the merged ticket's page now.
        page.goto(f"http://127.0.0.1:{port}/tickets/{newer}")
        expect(page).to_have_url(f"http://127.0.0.1:{port}/tickets/{oldest}")
        expect(page.locator("h1")).to_have_text(f"#{oldest} Printer on fire [MERGED]")
        expect(page.locator("#thread")).to_contain_text("kestrel printer")
        expect(page.locator("#thread")).to_contain_text("badger office")

        # The client answers the old ticket's mail (no ticket number in the subject: threaded by Message-ID
        # alone), once to their own first mail and once to ticketd's confirmation of it.
        answer = make_mail(subject="Re: Printer still smoking", body="The wombat extinguisher did not help.\n",
                           in_reply_to=second_mail["Message-ID"], references=second_mail["Message-ID"])
        to_confirmation = make_mail(subject="Re: smoke", body="Now the platypus alarm rings too.\n",
                                    in_reply_to=confirmation["Message-ID"], references=confirmation["Message-ID"])
        for msg in (answer, to_confirmation):
            landed = mail_in(inst, msg)
            assert (landed["outcome"], landed["tid"]) == ("reply", oldest), landed
        page.goto(f"http://127.0.0.1:{port}/tickets/{newer}")
        expect(page).to_have_url(f"http://127.0.0.1:{port}/tickets/{oldest}")
        expect(thread).to_have_count(4)
        expect(page.locator("#m3")).to_contain_text("wombat extinguisher")
        expect(page.locator("#m4")).to_contain_text("platypus alarm")
        page.screenshot(path=str(SCREENSHOTS / "merge.png"), full_page=True)
        context.close()
    merged = state(inst, oldest)
    assert (merged["subject"], merged["merged_into"]) == ("Printer on fire [MERGED]", None)
    assert state(inst, newer)["merged_into"] == merged["id"] and state(inst, newer)["messages"] == []
    assert bodies(inst, oldest) == ["The kestrel printer in room 4 burns.", "The smoke now reaches the badger office.",
                                    "The wombat extinguisher did not help.", "Now the platypus alarm rings too."]
    assert [r["tid"] for r in inst.query("SELECT tid FROM tickets WHERE merged_into IS NULL ORDER BY id")] == [
        oldest, other["tid"]]
    assert (SCREENSHOTS / "merge.png").stat().st_size > 10_000


def test_a_reply_with_its_attachment_is_split_off_into_a_new_ticket_in_the_browser(
        tmp_path: Path, relay: Relay, chromium: Browser):  # noqa: F811
    inst = staffed(Instance(tmp_path, extra_config=relay.outbound_toml()))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serving(inst) as port:
        first_mail = make_mail(subject="Printer on fire", body="The printer in room 4 burns.\n")
        tid = mail_in(inst, first_mail)["tid"]
        reply = make_mail(subject="Re: Printer on fire", body="Also: invoice 77 charges a narwhal fee.\n",
                          in_reply_to=first_mail["Message-ID"], references=first_mail["Message-ID"])
        reply.add_attachment(PNG, maintype="image", subtype="png", filename="invoice-scan.png")
        landed = mail_in(inst, reply)
        assert (landed["outcome"], landed["tid"]) == ("reply", tid), landed
        relay.wait_for(1)                                    # the new-ticket confirmation

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        sign_in(page, port, "ada")
        open_ticket(page, port, tid)
        thread = page.locator("#thread article.message")
        expect(thread).to_have_count(2)
        expect(page.locator("#m2")).to_contain_text("narwhal fee")
        old_link = page.locator("#m2").locator("a[download]", has_text="invoice-scan.png")
        old_href = old_link.get_attribute("href")
        assert old_href is not None and old_href.startswith(f"/tickets/{tid}/files/")

        page.locator("#m2").locator("input[name=message]").check()
        split = page.locator("form#split")
        split.locator("select[name=department]").select_option("Billing")
        split.locator("select[name=priority]").select_option("High")
        split.locator("input[name=subject]").fill("Invoice 77 wrong")
        page.get_by_role("button", name="Split into a new ticket").click()
        expect(page).to_have_url(re.compile(r"/tickets/[0-9]+\?done=split"))
        made = re.search(r"/tickets/([0-9]+)\?", page.url)
        assert made is not None and made.group(1) != tid
        new = made.group(1)
        expect(page.locator(".notice")).to_have_text("The messages are on this new ticket now.")
        expect(page.locator("h1")).to_have_text(f"#{new} Invoice 77 wrong")
        facts = page.locator("dl.facts")
        expect(facts.locator("dt:text-is('Department') + dd")).to_have_text("Billing")
        expect(facts.locator("dt:text-is('Priority') + dd")).to_have_text("High")
        expect(facts.locator("dt:text-is('Client') + dd")).to_contain_text("alice@client.example")
        expect(thread).to_have_count(1)
        expect(page.locator("#m1")).to_contain_text("narwhal fee")
        link = page.locator("#m1").locator("a[download]", has_text="invoice-scan.png")
        expect(link).to_have_count(1)
        href = link.get_attribute("href")
        assert href is not None and href.startswith(f"/tickets/{new}/files/")
        expect(page.locator("#m1").locator("img.thumb")).to_be_visible()
        download = context.request.get(f"http://127.0.0.1:{port}{href}")
        assert download.status == 200 and download.body() == PNG
        assert "invoice-scan.png" in download.headers["content-disposition"]
        page.screenshot(path=str(SCREENSHOTS / "split.png"), full_page=True)

        # The original keeps its first message only; the file is no longer one of its files.
        open_ticket(page, port, tid)
        expect(page.locator("h1")).to_have_text(f"#{tid} Printer on fire")
        expect(thread).to_have_count(1)
        expect(page.locator("#m1")).to_contain_text("The printer in room 4 burns.")
        expect(page.locator("#thread")).not_to_contain_text("narwhal")
        expect(page.get_by_role("link", name="invoice-scan.png")).to_have_count(0)
        expect(page.locator("#log")).to_contain_text(f"ticket: {new}")
        assert context.request.get(f"http://127.0.0.1:{port}{old_href}").status == 404
        context.close()
    assert bodies(inst, tid) == ["The printer in room 4 burns."]
    assert bodies(inst, new) == ["Also: invoice 77 charges a narwhal fee."]
    assert [m["files"] for m in state(inst, new)["messages"]] == [["invoice-scan.png"]]
    assert [m["files"] for m in state(inst, tid)["messages"]] == [[]]
    assert (SCREENSHOTS / "split.png").stat().st_size > 10_000


def test_a_stale_reply_and_options_change_are_refused_with_what_changed_then_confirmed(
        tmp_path: Path, relay: Relay, chromium: Browser):  # noqa: F811
    inst = staffed(Instance(tmp_path, extra_config=relay.outbound_toml()))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    answer = "Ada here: a new fuser for the pelican printer is on its way."
    with serving(inst) as port:
        tid = mail_in(inst, make_mail(subject="Printer jammed", body="The pelican printer jams.\n"))["tid"]
        relay.wait_for(1)                                    # the new-ticket confirmation
        assert (state(inst, tid)["status"], state(inst, tid)["priority"]) == ("Open", "Medium")

        ada = chromium.new_context(viewport={"width": 1280, "height": 900})
        dora = chromium.new_context(viewport={"width": 1280, "height": 900})
        a_reply, b = ada.new_page(), dora.new_page()
        sign_in(a_reply, port, "ada")
        sign_in(b, port, "dora")
        a_options = ada.new_page()                           # a second tab of Ada's, same session
        for page in (a_reply, a_options, b):
            open_ticket(page, port, tid)

        # Dora puts the ticket on hold and raises its priority.
        b.locator("#options select[name=status]").select_option("On Hold")
        b.locator("#options select[name=priority]").select_option("High")
        b.get_by_role("button", name="Save changes").click()
        expect(b.locator(".notice")).to_have_text("Options saved.")
        assert (state(inst, tid)["status"], state(inst, tid)["priority"]) == ("On Hold", "High")

        # Ada, on her stale page, answers and sets the status after the reply: refused, nothing applied.
        a_reply.locator("#reply-body").fill(answer)
        a_reply.locator("#reply select[name=status]").select_option("In Progress")
        with a_reply.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/reply")) as sent:
            a_reply.get_by_role("button", name="Send reply").click()
        assert sent.value.status == 409
        conflict = a_reply.locator(".conflict")
        expect(conflict).to_contain_text("The ticket changed while you had it open, by dora:")
        expect(conflict.locator("li")).to_have_text(["priority: Medium → High", "status: Open → On Hold"])
        expect(conflict).to_contain_text("Nothing was applied.")
        expect(a_reply.locator("#reply-body")).to_have_value(answer)
        expect(a_reply.locator("#reply select[name=status]")).to_have_value("In Progress")
        expect(a_reply.locator("dl.facts dt:text-is('Status') + dd")).to_have_text("On Hold")   # as it is now
        a_reply.screenshot(path=str(SCREENSHOTS / "collision.png"), full_page=True)
        shown = state(inst, tid)
        assert (len(shown["messages"]), shown["status"]) == (1, "On Hold")
        assert "staff_reply" not in shown["events"]

        # Her other tab: the priority Dora changed too, and a tag: refused, what she chose is kept.
        a_options.locator("#options select[name=priority]").select_option("Low")
        a_options.locator("#options input[name=tags]").fill("hardware")
        with a_options.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/options")) as saved:
            a_options.get_by_role("button", name="Save changes").click()
        assert saved.value.status == 409
        conflict = a_options.locator(".conflict")
        expect(conflict).to_contain_text("by dora:")
        expect(conflict.locator("li")).to_have_text(["priority: Medium → High", "status: Open → On Hold"])
        expect(a_options.locator("#options select[name=priority]")).to_have_value("Low")
        expect(a_options.locator("#options input[name=tags]")).to_have_value("hardware")
        expect(a_options.locator("#options select[name=status]")).to_have_value("On Hold")
        shown = state(inst, tid)
        assert (shown["priority"], shown["tags"], shown["status"]) == ("High", [], "On Hold")

        # Sending again, against the ticket as it is now, is the confirmation: both are applied.
        a_reply.get_by_role("button", name="Send reply").click()
        expect(a_reply).to_have_url(re.compile(rf"/tickets/{tid}\?done=replied"))
        expect(a_reply.locator(".notice")).to_have_text("Reply sent.")
        expect(a_reply.locator(".conflict")).to_have_count(0)
        expect(a_reply.locator("#m2")).to_contain_text("new fuser")
        expect(a_reply.locator("dl.facts dt:text-is('Status') + dd")).to_have_text("In Progress")
        # Her options tab was drawn before that reply: refused once more (the reply and its status), then
        # confirmed; what she chose is still what she chose.
        a_options.get_by_role("button", name="Save changes").click()
        expect(a_options.locator(".conflict li")).to_have_count(2)
        expect(a_options.locator(".conflict")).to_contain_text("status: On Hold → In Progress")
        expect(a_options.locator("#options select[name=priority]")).to_have_value("Low")
        expect(a_options.locator("#options input[name=tags]")).to_have_value("hardware")
        a_options.get_by_role("button", name="Save changes").click()
        expect(a_options.locator(".notice")).to_have_text("Options saved.")
        expect(a_options.locator(".conflict")).to_have_count(0)
        expect(a_options.locator("dl.facts dt:text-is('Priority') + dd")).to_have_text("Low")
        sent_mail = wait_mail_with(relay, "new fuser for the pelican printer")
        assert sent_mail["To"].addresses[0].addr_spec == "alice@client.example"
        ada.close()
        dora.close()
    shown = state(inst, tid)
    assert (shown["status"], shown["priority"], shown["tags"]) == ("In Progress", "Low", ["hardware"])
    assert [m["body"].count("new fuser") for m in shown["messages"]] == [0, 1]
    assert len(mails_with(relay, "new fuser for the pelican printer")) == 1    # the refused try sent nothing
    assert (SCREENSHOTS / "collision.png").stat().st_size > 10_000
