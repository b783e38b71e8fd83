"""The client's side end to end in a real headless Chromium at a phone's width (Debian's, driven by
Playwright), against the real daemon: the link in ticketd's mail (caught at the test relay) opens the ticket;
the client reads it (no private note, the staff member's display name), replies with a file (staff get mail),
rates the staff reply, closes the ticket, reopens it by replying to the mail, and a link revoked from the
staff page stops working. Screenshots: client-ticket-phone.png and client-list-phone.png."""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.helpers import Instance, make_mail
from tests.relay import Relay
from tests.test_browser import SCREENSHOTS, chromium, sign_in  # noqa: F401  (chromium: the browser fixture)
from tests.test_browser_surgery import mail_in, mails_with, state
from tests.test_web import serving
from tests.test_web_admin import staffed
from tests.test_web_desk import PNG

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
LINK = re.compile(r"http://127\.0\.0\.1:\d+(/c/[A-Za-z0-9_-]{32})(?![A-Za-z0-9_-])")


def link_in(relay: Relay, text: str, to: str = "alice@client.example", timeout: float = 20) -> str:
    """The client link in the (one) mail to ``to`` whose text holds ``text``, as a path."""
    deadline = time.monotonic() + timeout
    while not (found := mails_with(relay, text, to)):
        assert time.monotonic() < deadline, f"no mail with {text!r} for {to}"
        time.sleep(0.05)
    (mail,) = found
    body = mail.get_body(("plain",))
    assert body is not None
    match = LINK.search(body.get_content())   # type: ignore[attr-defined]
    assert match, body.get_content()          # type: ignore[attr-defined]
    return match.group(1)


def staff_mail_with(relay: Relay, text: str, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = [t.rcpt_tos for t in list(relay.transactions) if text.encode() in t.data
                 and not any("client.example" in r for r in t.rcpt_tos)]
        if found or time.monotonic() > deadline:
            return [r for rcpts in found for r in rcpts]
        time.sleep(0.05)


def test_a_client_reads_replies_rates_closes_and_reopens_and_a_revoked_link_stops(
        tmp_path: Path, relay: Relay, chromium: Browser):  # noqa: F811
    inst = staffed(Instance(tmp_path, extra_config=relay.outbound_toml()))
    inst.cli("staff", "set", "dora", "--notify", "Technical Support")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serving(inst) as port:
        base = f"http://127.0.0.1:{port}"
        first = make_mail(subject="Printer on fire", body="The heron printer in room 4 burns.\n")
        tid = mail_in(inst, first)["tid"]
        inst.cli("ticket", "note", tid, "--as", "ada", "--body-file", "-", input=b"SECRET: check the warranty\n")
        inst.cli("ticket", "reply", tid, "--as", "ada", "--body-file", "-",
                 input=b"Hello [FIRSTNAME], unplug the printer and tell us what the panel says.\n")
        path = link_in(relay, "unplug the printer")

        phone = chromium.new_context(**PHONE)   # type: ignore[arg-type]
        page = phone.new_page()
        page.goto(base + path)
        expect(page).to_have_url(f"{base}/client/tickets/{tid}")
        expect(page.locator("h1")).to_contain_text("Printer on fire")
        thread = page.locator("#thread article.message")
        expect(thread).to_have_count(2)                      # the client's mail and the reply; never the note
        expect(page.locator("#thread")).not_to_contain_text("SECRET")
        expect(thread.nth(1)).to_contain_text("Ada Lovelace")
        expect(page.locator("#thread")).not_to_contain_text("ada@helpdesk")
        expect(page.locator(".facts .status")).to_have_text("Answered")

        # Reply with a file: Client Reply, and the department's staff get it by mail.
        page.get_by_role("textbox", name="Message").fill("The panel says E-42 and the gannet tray is jammed.")
        page.set_input_files("#reply-file", files=[{"name": "panel.png", "mimeType": "image/png", "buffer": PNG}])
        page.get_by_role("button", name="Send reply").click()
        expect(page.locator(".notice")).to_contain_text("Your reply was sent.")
        expect(page.locator(".facts .status")).to_have_text("Client Reply")
        expect(page.get_by_role("link", name="panel.png")).to_be_visible()
        assert staff_mail_with(relay, "gannet tray") == ["dora@helpdesk.example"]

        # Rate the staff reply 4 of 5.
        page.locator("#thread article.kind-staff-reply").get_by_role("button", name="4 of 5").click()
        expect(page.locator(".notice")).to_contain_text("Thank you for rating")
        expect(page.locator("#thread article.kind-staff-reply")).to_contain_text("You rated this reply 4 of 5.")
        # Usable on a phone: nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(SCREENSHOTS / "client-ticket-phone.png"), full_page=True)

        # Close it.
        page.get_by_role("button", name="Close ticket").click()
        expect(page.locator(".notice")).to_have_text("The ticket is closed.")
        expect(page.locator(".facts .status")).to_have_text("Closed")
        page.get_by_role("link", name="My tickets").first.click()
        expect(page).to_have_url(f"{base}/client/tickets")
        expect(page.locator("table.client-list tbody tr")).to_have_count(1)
        expect(page.locator("table.client-list .status")).to_have_text("Closed")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(SCREENSHOTS / "client-list-phone.png"), full_page=True)

        # The client replies to the staff reply's mail: the ticket opens again (seed: reply to reopen).
        (reply_mail,) = mails_with(relay, "unplug the printer")
        again = make_mail(subject=f"Re: {reply_mail['Subject']}", body="It is burning again, the puffin smell.\n",
                          in_reply_to=reply_mail["Message-ID"], references=reply_mail["Message-ID"])
        assert mail_in(inst, again)["outcome"] == "reply"
        page.goto(f"{base}/client/tickets/{tid}")
        expect(page.locator(".facts .status")).to_have_text("Client Reply")
        expect(page.locator("#thread")).to_contain_text("puffin smell")

        # Staff revoke the client's link from the ticket page: it and its session stop at once.
        desk = chromium.new_context(viewport={"width": 1280, "height": 900})
        staff_page = desk.new_page()
        sign_in(staff_page, port, "ada")
        staff_page.goto(f"{base}/tickets/{tid}#links")
        expect(staff_page.locator("#thread")).to_contain_text("rated 4 of 5")
        row = staff_page.locator("#links tr", has_text="alice@client.example")
        row.get_by_role("button", name="Revoke").click()
        expect(staff_page.locator(".notice")).to_have_text("Client links revoked.")
        desk.close()
        page.reload()
        expect(page.locator("h1")).to_have_text("Link needed")
        page.goto(base + path)
        expect(page.locator("h1")).to_have_text("Link not valid")
        phone.close()
    ticket = state(inst, tid)
    assert ticket["status"] == "Customer-Reply"
    assert [m["kind"] for m in ticket["messages"]] == ["reply", "note", "staff_reply", "reply", "reply"]
    assert ticket["messages"][3]["files"] == ["panel.png"]
    assert {"closed", "reopened", "reply_rated", "links_revoked"} <= set(ticket["events"])
    assert (SCREENSHOTS / "client-ticket-phone.png").stat().st_size > 10_000
