"""The web view's ticket list and ticket page, the parts a bigger desk shows (issue 12): pages and the capped
count, the flagged-to-me section, the auto-refresh the staff member chooses, the thread's order, opening a
ticket from the browser, quoting, CC recipients to confirm, the client account, a department move, the
predefined replies' edit form, and import-log entries that follow their ticket to another department."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Instance, ingest, make_mail
from tests.relay import Relay
from tests.test_web import serving
from tests.test_web_admin import signed_in, staffed
from tests.test_web_desk import rows
from tests.webclient import form_values

pytestmark = pytest.mark.both_engines


def ingest_many(inst: Instance, count: int) -> list[str]:
    folder = inst.root / "many"
    folder.mkdir()
    for n in range(count):
        (folder / f"{n:03}.eml").write_bytes(make_mail(subject=f"Question {n:03}", sender=f"c{n}@client.example")
                                             .as_bytes())
    return [item["ticket"] for item in inst.cli_json("ingest", str(folder))["items"]]


@pytest.fixture
def site(tmp_path: Path, database_url: str, relay: Relay) -> Iterator[tuple[Instance, int]]:
    inst = Instance(tmp_path, database_url=database_url, extra_config=relay.outbound_toml())
    inst.config.write_text(inst.config.read_text().replace("[web]\nlisten = false\n",
                                                           '[web]\nlisten = false\nthread_order = "oldest"\n'))
    staffed(inst)
    with serving(inst) as port:
        yield inst, port


def test_pages_the_capped_count_flagged_on_top_and_auto_refresh(site: tuple[Instance, int]):
    inst, port = site
    tids = ingest_many(inst, 55)
    ada = signed_in(port, "ada")
    page = ada.request("/tickets?sort=subject&dir=asc")[2]
    assert "55 tickets" in page and "Page 1 of 2" in page and len(rows(page)) == 50
    assert rows(page)[0] == tids[0] and 'rel="next"' in page
    page2 = ada.request("/tickets?sort=subject&dir=asc&page=2")[2]
    assert rows(page2) == tids[50:] and "Page 2 of 2" in page2 and 'rel="prev"' in page2
    assert rows(ada.request("/tickets?page=99999999999999999999")[2]) == []      # no 500 for a silly number
    # Flagged to me: on top, whatever the view.
    inst.cli("ticket", "set", tids[7], "--as", "dora", "--flag", "ada")
    inst.cli("ticket", "set", tids[7], "--as", "ada", "--status", "On Hold")
    page = ada.request("/tickets")[2]                                # awaiting reply: On Hold is not in it
    flagged = page.split('id="flagged-h"')[1].split("</section>")[0]
    assert rows(flagged) == [tids[7]] and tids[7] not in rows(page.split("</section>", 1)[1])
    assert 'id="flagged-h"' not in signed_in(port, "dora").request("/tickets")[2]
    # Auto refresh: chosen once, kept in a cookie, a plain meta refresh (no script).
    status, headers, page = ada.request("/tickets?refresh=60")
    assert '<meta http-equiv="refresh" content="60">' in page and "ticketd_refresh=60" in headers["set-cookie"]
    assert '<meta http-equiv="refresh" content="60">' in ada.request("/tickets?status=all")[2]
    assert "http-equiv" not in ada.request("/tickets?refresh=0")[2]
    assert "http-equiv" not in ada.request("/tickets?refresh=7")[2]              # not one of the choices


def test_open_quote_cc_client_and_a_department_move(site: tuple[Instance, int], relay: Relay):
    inst, port = site
    inst.cli("clients", "add", "olivia@acme.example", "--account", "Acme", "--name", "Olivia Owner")
    dora = signed_in(port, "dora")
    page = dora.request("/tickets/new")[2]
    assert "<option>Technical Support</option>" in page and "Billing" not in page    # her departments only
    form = {**form_values(page, "/tickets/new"), "email": "olivia@acme.example", "name": "Olivia Owner",
            "subject": "Your new server", "body": "Hello [FIRSTNAME], your server is ready."}
    status, headers, _ = dora.request("/tickets/new", form, files=[])
    assert status == 303
    tid = re.search(r"/tickets/(\d+)", headers["location"]).group(1)
    shown = inst.cli_json("ticket", "show", tid)
    assert shown["department"] == "Technical Support" and shown["messages"][0]["body"].startswith("Hello Olivia,")
    mail = relay.wait_for(1)[0]
    assert list(mail.rcpt_tos) == ["olivia@acme.example"]
    assert dora.request("/tickets/new", {**form, "department": "Billing"}, files=[])[0] == 403
    # The client answers: the thread runs oldest first (web.thread_order), and Quote puts a message in the
    # reply box.
    answer = make_mail(subject=f"Re: [Ticket #{tid}] Your new server", sender="olivia@acme.example",
                       body="Thanks!\nIt works.\n")
    assert ingest(inst, answer)["outcome"] == "reply"
    page = dora.request(f"/tickets/{tid}")[2]
    thread = page.split('id="thread-h"')[1]
    assert thread.index("your server is ready") < thread.index("It works.")
    quoted = dora.request(f"/tickets/{tid}?quote=2")[2]
    assert "Alice Client wrote:\n\n&gt; Thanks!\n&gt; It works.\n\n</textarea>" in quoted
    options = form_values(page, f"/tickets/{tid}/options")
    assert options["client"] == "Acme"
    assert dora.request(f"/tickets/{tid}/options", {**options, "client": ""})[0] == 303
    shown = inst.cli_json("ticket", "show", tid)
    assert any(e["event"] == "options_changed" and "client" in e["detail"] for e in shown["log"])
    # A client's new mail with a colleague in CC: pending until staff confirm it.
    other = ingest(inst, make_mail(subject="Also", sender="olivia@acme.example", cc="colleague@partner.example"))
    page = dora.request(f"/tickets/{other['ticket']}")[2]
    assert "colleague@partner.example (pending)" in page
    options = form_values(page, f"/tickets/{other['ticket']}/options")
    status, _, _ = dora.request(f"/tickets/{other['ticket']}/options",
                                {**options, "cc_confirm": "colleague@partner.example"})
    assert status == 303
    assert inst.cli_json("ticket", "show", other["ticket"])["cc"] == [
        {"address": "colleague@partner.example", "state": "confirmed"}]
    # Moving the ticket to a department she does not work in takes her back to the list.
    page = dora.request(f"/tickets/{tid}")[2]
    status, headers, _ = dora.request(f"/tickets/{tid}/options", {**form_values(page, f"/tickets/{tid}/options"),
                                                                  "department": "Billing"})
    assert status == 303 and headers["location"] == f"/tickets?done=moved-{tid}"
    assert dora.request(f"/tickets/{tid}")[0] == 404
    page = dora.request("/tickets?status=all")[2]
    assert tid not in rows(page)


def test_import_log_entries_follow_their_ticket_and_predefined_replies_are_edited(site: tuple[Instance, int]):
    inst, port = site
    tid = ingest(inst, make_mail(subject="Printer on fire"))["ticket"]
    blocked = ingest(inst, make_mail(subject=f"Re: [Ticket #{tid}] Printer on fire", sender="mallory@evil.example"))
    assert blocked["outcome"] == "blocked"
    dora, bill = signed_in(port, "dora"), signed_in(port, "bill")
    entries = lambda b: re.findall(r'href="/import-log/(\d+)"', b.request("/import-log")[2])  # noqa: E731
    assert len(set(entries(dora))) == 2 and entries(bill) == []
    inst.cli("ticket", "set", tid, "--as", "ada", "--department", "Billing")
    assert entries(dora) == [] and len(set(entries(bill))) == 2     # the ticket's department now decides
    # Predefined replies: edit and delete from the page.
    inst.cli("predefined", "add", "Greeting", "--body-file", "-", input=b"Hello [NAME]\n")
    (reply_id,) = [r["id"] for r in inst.cli_json("predefined", "list")["items"]]
    page = dora.request(f"/predefined?edit={reply_id}")[2]
    form = form_values(page, f"/predefined/{reply_id}")
    status, _, _ = dora.request(f"/predefined/{reply_id}", {**form, "title": "Greeting, formal",
                                                            "body": "Dear [NAME],", "action": "save"})
    assert status == 303
    assert [(r["title"], r["body"]) for r in inst.cli_json("predefined", "list")["items"]] == [
        ("Greeting, formal", "Dear [NAME],")]
    assert dora.request("/predefined/999999", {**form, "action": "delete"})[0] == 404
