"""The web view end to end in a real headless Chromium (Debian's, driven by Playwright for Python; issue 12):
sign in; find a ticket by search; reply with an attachment (the mail reaches the test relay, threaded); add a
note with a mention; change options; import a blocked reply from the mail import log; a department-limited
staff member cannot see another department's ticket. Screenshots of the ticket list, a ticket page and the
import log are saved under test-artifacts/screenshots/ (named in the README)."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import ROOT, Instance, ingest, make_mail
from tests.relay import Relay
from tests.test_web import serving
from tests.test_web_admin import staffed
from tests.test_web_desk import PNG
from tests.webclient import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs it (scripts/install-test-deps.sh)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


def sign_in(page: Page, port: int, username: str) -> None:
    page.goto(f"http://127.0.0.1:{port}/tickets")
    expect(page).to_have_url(re.compile(r"/login\?next="))     # sent to sign in, and back afterwards
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/tickets$"))


def test_a_staff_member_works_a_ticket_and_the_import_log_in_a_real_browser(
        tmp_path: Path, relay: Relay, chromium: Browser):
    inst = staffed(Instance(tmp_path, extra_config=relay.outbound_toml()))
    first = make_mail(subject="Printer on fire", body="The quokka printer in room 4 is burning.\n")
    tech = ingest(inst, first)["ticket"]
    billing = ingest(inst, make_mail(subject="Invoice wrong", to="billing@helpdesk.example",
                                     sender="bob@client.example", body="Invoice 77 charges a wombat fee.\n"))["ticket"]
    for n in range(3):
        ingest(inst, make_mail(subject=f"Other question {n}", sender=f"c{n}@client.example"))
    stranger = make_mail(subject=f"Re: [Ticket #{tech}] Printer on fire", sender="mallory@evil.example",
                         body="I am the printer's real owner.\n")
    assert ingest(inst, stranger)["reason"] == "unauthorised_sender"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    upload = tmp_path / "fire-report.png"
    upload.write_bytes(PNG)
    with serving(inst) as port:
        relay.wait_for(5)          # the new-ticket confirmations
        sent_before = len(relay.transactions)
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        sign_in(page, port, "ada")
        expect(page.locator("h1")).to_have_text("5 tickets")
        page.screenshot(path=str(SCREENSHOTS / "ticket-list.png"), full_page=True)

        # Find the ticket by a word of its message.
        page.get_by_label("Search").fill("quokka")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("h1")).to_have_text("1 ticket")
        page.get_by_role("link", name="Printer on fire").click()
        expect(page).to_have_url(re.compile(rf"/tickets/{tech}$"))
        expect(page.locator(".blocked")).to_contain_text("Blocked replies")

        # Reply with an attachment: the client gets it, threaded on their mail.
        page.locator("#reply-body").fill("Hello [FIRSTNAME],\n\nthe **fire** is out.")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator(".preview")).to_contain_text("Hello Alice,")
        page.locator("#reply-files").set_input_files(str(upload))
        page.get_by_role("button", name="Send reply").click()
        expect(page.locator(".notice")).to_have_text("Reply sent.")
        mail = relay.wait_for(sent_before + 1)[sent_before]
        sent = email.message_from_bytes(mail.data, policy=email.policy.default)
        assert list(mail.rcpt_tos) == ["alice@client.example"]
        assert first["Message-ID"] in sent["In-Reply-To"] and first["Message-ID"] in sent["References"]
        assert [p.get_filename() for p in sent.iter_attachments()] == ["fire-report.png"]
        expect(page.locator("img.thumb").first).to_be_visible()

        # A note that mentions Dora: she gets mail; it shows as a private note.
        page.locator("#note-body").fill("@dora can you check the smoke detector?")
        page.get_by_role("button", name="Add note").click()
        expect(page.locator(".notice")).to_have_text("Note added.")
        expect(page.locator("article.kind-note").first).to_contain_text("smoke detector")
        note_mail = relay.wait_for(sent_before + 2)[sent_before + 1]
        assert list(note_mail.rcpt_tos) == ["dora@helpdesk.example"]

        # Options: priority, assignee, tags and the related service.
        page.locator("#options select[name=priority]").select_option("High")
        page.locator("#options select[name=assign]").select_option("dora")
        page.locator("#options input[name=tags]").fill("hardware, fire")
        page.locator("#options input[name=service]").fill("printer-4.example.net")
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator(".notice")).to_have_text("Options saved.")
        page.screenshot(path=str(SCREENSHOTS / "ticket-page.png"), full_page=True)
        shown = inst.cli_json("ticket", "show", tech)
        assert (shown["priority"], shown["assigned"], shown["tags"], shown["related_service"]) == (
            "High", "dora", ["fire", "hardware"], "printer-4.example.net")

        # The import log: the blocked reply, imported into its ticket as a note.
        page.get_by_role("link", name="Mail import log").click()
        page.get_by_label("Outcome").select_option("blocked:unauthorised_sender")
        page.get_by_role("button", name="Filter").click()
        page.screenshot(path=str(SCREENSHOTS / "import-log.png"), full_page=True)
        page.get_by_role("link", name=f"Re: [Ticket #{tech}] Printer on fire").click()
        expect(page.locator(".body.text")).to_contain_text("I am the printer's real owner.")
        page.get_by_label("As").select_option("note")
        page.get_by_role("button", name="Import").click()
        expect(page).to_have_url(re.compile(rf"/tickets/{tech}\?done=imported"))
        expect(page.locator("article.kind-note").filter(has_text="real owner")).to_have_count(1)
        expect(page.locator(".blocked")).to_have_count(0)
        context.close()

        # Dora works in Technical Support: Billing's ticket is nowhere for her.
        context = chromium.new_context()
        page = context.new_page()
        sign_in(page, port, "dora")
        expect(page.get_by_role("link", name="Invoice wrong")).to_have_count(0)
        response = page.goto(f"http://127.0.0.1:{port}/tickets/{billing}")
        assert response is not None and response.status == 404
        expect(page.locator("h1")).to_have_text("Not found")
        page.goto(f"http://127.0.0.1:{port}/tickets?q=wombat&status=all")
        expect(page.locator("h1")).to_have_text("0 tickets")
        context.close()
    for name in ("ticket-list.png", "ticket-page.png", "import-log.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000, name
