"""Merging tickets (issue 13, point 1): the newer into the oldest, through the desk, from the CLI; old
numbers, links and mail lead to the merged ticket (seed: Merge Tickets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Instance, ingest, make_mail
from tests.test_web import serving
from tests.webclient import PASSWORD, Browser

pytestmark = pytest.mark.both_engines


def test_newer_tickets_merge_into_the_oldest_and_their_mail_follows(tmp_path: Path, database_url: str):
    inst = Instance(tmp_path, database_url=database_url)
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada", "--admin")
    inst.cli("staff", "add", "bill@helpdesk.example", "--name", "Bill", "--departments", "Billing")
    inst.cli("staff", "passwd", "ada", input=f"{PASSWORD}\n".encode())
    first_mail = make_mail(subject="Printer on fire", body="First message.\n")
    oldest = ingest(inst, first_mail)["ticket"]
    second_mail = make_mail(subject="Printer still on fire", body="Second message.\n")
    middle = ingest(inst, second_mail)["ticket"]
    newest = ingest(inst, make_mail(subject="Fire", body="Third message.\n"))["ticket"]
    inst.cli("ticket", "set", newest, "--as", "ada", "--tag", "fire", "--cc-add", "boss@client.example")
    inst.cli("ticket", "reply", middle, "--as", "ada", "--body-file", "-", input=b"We are on it.\n")  # latest reply
    # One ticket is not a merge; Bill works in Billing only.
    assert inst.cli("ticket", "merge", oldest, oldest, "--as", "ada", check=False).returncode == 65
    assert inst.cli("ticket", "merge", oldest, middle, "--as", "bill", check=False).returncode == 77
    out = inst.cli("ticket", "merge", newest, middle, oldest, "--as", "ada").stdout.decode()
    assert out.strip() == f"#{oldest}: merged #{middle}, #{newest} into #{oldest}"
    merged = inst.cli_json("ticket", "show", oldest)
    assert merged["subject"] == "Printer on fire [MERGED]"
    assert merged["status"] == "Answered"                          # the ticket with the most recent reply
    assert merged["client_email"] == "alice@client.example"
    bodies = [m["body"].strip() for m in merged["messages"]]
    assert bodies == ["First message.", "Second message.", "Third message.", "We are on it."]   # by time
    assert merged["tags"] == ["fire"] and [c["address"] for c in merged["cc"]] == ["boss@client.example"]
    assert [e["event"] for e in merged["log"]][-1] == "merged"
    # The merged-away numbers lead to it; the lists show it alone.
    assert inst.cli_json("ticket", "show", middle)["tid"] == oldest
    listed = [t["tid"] for t in inst.cli_json("ticket", "list", "--all")["items"]]
    assert listed == [oldest]
    # Mail to the old tickets lands on it: by Message-ID, and by the subject's ticket number.
    reply = make_mail(subject="Re: Printer still on fire", body="By Message-ID.\n",
                      in_reply_to=second_mail["Message-ID"], references=second_mail["Message-ID"])
    assert (ingest(inst, reply)["outcome"], ingest(inst, make_mail(subject=f"Re: [Ticket #{newest}] Fire",
                                                                   body="By token.\n"))["ticket"]) == ("reply", oldest)
    assert [m["body"].strip() for m in inst.cli_json("ticket", "show", oldest)["messages"]][-2:] == [
        "By Message-ID.", "By token."]
    # ... and so do old links in the browser. There, tickets merge from a ticket's page or the list.
    more = [ingest(inst, make_mail(subject=f"More {n}", sender="bob@client.example"))["ticket"] for n in range(3)]
    with serving(inst) as port:
        b = Browser(port)
        assert b.sign_in("ada")[0] == 303
        status, headers, _ = b.request(f"/tickets/{newest}")
        assert status == 303 and headers["location"] == f"/tickets/{oldest}"
        page = b.request(f"/tickets/{more[0]}")[2]
        status, _, page = b.request(f"/tickets/{more[0]}/merge", {"csrf": Browser.csrf(page), "others": "999999"})
        assert status == 404 and "no ticket among #999999" in page
        status, headers, _ = b.request(f"/tickets/{more[0]}/merge", {"csrf": Browser.csrf(page),
                                                                     "others": f"#{more[1]}"})
        assert status == 303 and headers["location"].startswith(f"/tickets/{more[0]}?done=merged")
        status, headers, _ = b.request("/tickets/merge", {"csrf": Browser.csrf(page), "tid": [more[2], more[0]]})
        assert status == 303 and headers["location"].startswith(f"/tickets/{more[0]}?done=merged")
        assert "Tickets merged." in b.request(headers["location"])[2]
    assert [t["tid"] for t in inst.cli_json("ticket", "list", "--all")["items"]] == [more[0], oldest]


def test_messages_split_off_into_a_new_ticket_with_their_attachments_and_mail(tmp_path: Path, database_url: str):
    inst = Instance(tmp_path, database_url=database_url)
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada", "--admin")
    first = make_mail(subject="Printer on fire", body="The printer burns.\n")
    tid = ingest(inst, first)["ticket"]
    second = make_mail(subject=f"Re: [Ticket #{tid}] Printer on fire", body="Also: my invoice is wrong.\n")
    second.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf")
    assert ingest(inst, second)["outcome"] == "reply"
    shown = inst.cli_json("ticket", "show", tid)
    moved = shown["messages"][1]
    assert [a["filename"] for a in moved["attachments"]] == ["invoice.pdf"]
    assert inst.cli("ticket", "split", tid, "--as", "ada", "--messages",
                    ",".join(str(m["id"]) for m in shown["messages"]), check=False).returncode == 65   # none left
    out = inst.cli("ticket", "split", tid, "--as", "ada", "--messages", str(moved["id"]), "--department", "Billing",
                   "--priority", "High", "--subject", "Invoice wrong").stdout.decode()
    new = out.split(":")[0].lstrip("#")
    assert out.strip() == f"#{new}: split 1 message of #{tid} off into #{new}"
    split = inst.cli_json("ticket", "show", new)
    assert (split["subject"], split["department"], split["priority"], split["status"]) == (
        "Invoice wrong", "Billing", "High", "Open")
    assert split["client_email"] == "alice@client.example"
    assert [m["body"].strip() for m in split["messages"]] == ["Also: my invoice is wrong."]
    assert [a["filename"] for a in split["messages"][0]["attachments"]] == ["invoice.pdf"]
    left = inst.cli_json("ticket", "show", tid)
    assert [m["body"].strip() for m in left["messages"]] == ["The printer burns."]
    assert left["last_reply_at"] == left["messages"][0]["created_at"]
    assert any(e["event"] == "split" and e["detail"]["ticket"] == new for e in left["log"])
    # An answer to the split-off message's mail lands on the new ticket.
    answer = make_mail(subject="Re: invoice", body="Any news?\n", in_reply_to=second["Message-ID"],
                       references=second["Message-ID"])
    assert ingest(inst, answer)["ticket"] == new
    # In the browser: tick messages, then "Split into a new ticket".
    third = ingest(inst, make_mail(subject=f"Re: [Ticket #{tid}] Printer on fire", body="Smoke everywhere.\n"))
    assert third["ticket"] == tid
    inst.cli("staff", "passwd", "ada", input=f"{PASSWORD}\n".encode())
    with serving(inst) as port:
        b = Browser(port)
        assert b.sign_in("ada")[0] == 303
        page = b.request(f"/tickets/{tid}")[2]
        ids = [m["id"] for m in inst.cli_json("ticket", "show", tid)["messages"]]
        assert f'name="message" value="{ids[1]}" form="split"' in page
        status, headers, _ = b.request(f"/tickets/{tid}/split", {
            "csrf": Browser.csrf(page), "message": [str(ids[1])], "department": "Technical Support",
            "priority": "Low", "subject": "Smoke"})
        assert status == 303
        made = headers["location"].split("/tickets/")[1].split("?")[0]
        assert made != tid and "The messages are on this new ticket now." in b.request(headers["location"])[2]
    assert [m["body"].strip() for m in inst.cli_json("ticket", "show", made)["messages"]] == ["Smoke everywhere."]


def test_messages_are_edited_and_deleted_and_tickets_deleted_or_banned_with_their_sender(
        tmp_path: Path, database_url: str):
    inst = Instance(tmp_path, database_url=database_url)
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada", "--admin")
    tid = ingest(inst, make_mail(subject="Printer on fire", body="The printer burns.\n"))["ticket"]
    inst.cli("ticket", "reply", tid, "--as", "ada", "--body-file", "-", input=b"Typo in this reply.\n")
    assert ingest(inst, make_mail(subject=f"Re: [Ticket #{tid}] x", body="Thanks.\n"))["ticket"] == tid
    first, staff_reply, thanks = (m["id"] for m in inst.cli_json("ticket", "show", tid)["messages"])
    out = inst.cli("ticket", "edit", tid, "--as", "ada", "--message", str(staff_reply), "--body-file", "-",
                   input=b"The **fixed** reply.\n").stdout.decode()
    assert out.strip() == f"#{tid}: message {staff_reply} edited"
    shown = inst.cli_json("ticket", "show", tid)
    assert shown["messages"][1]["body"] == "The **fixed** reply." and "<strong>fixed</strong>" in (
        shown["messages"][1]["body_html"])
    edited = next(e for e in shown["log"] if e["event"] == "message_edited")
    assert edited["detail"]["before"].strip() == "Typo in this reply." and edited["actor"] == "ada"
    assert [t["tid"] for t in inst.cli_json("ticket", "list", "--all")["items"]] == [tid]
    inst.cli("ticket", "delete", tid, "--as", "ada", "--message", str(thanks))
    shown = inst.cli_json("ticket", "show", tid)
    assert [m["id"] for m in shown["messages"]] == [first, staff_reply]
    assert shown["last_reply_at"] == shown["messages"][1]["created_at"]          # recounted
    assert any(e["event"] == "message_deleted" and e["detail"]["text"].strip() == "Thanks." for e in shown["log"])
    assert inst.cli("ticket", "delete", tid, "--as", "ada", "--message", "999999", check=False).returncode == 66
    # Deleting the first message deletes the ticket; "block sender & delete" bans the client too.
    out = inst.cli("ticket", "delete", tid, "--as", "ada", "--message", str(first)).stdout.decode()
    assert out.strip() == f"#{tid}: deleted ticket #{tid} (its first message)"
    assert inst.cli("ticket", "show", tid, check=False).returncode == 66
    spam = ingest(inst, make_mail(subject="Cheap pills", sender="spammer@spam.example"))["ticket"]
    inst.cli("ticket", "delete", spam, "--as", "ada", "--ban-sender")
    assert inst.cli("ticket", "show", spam, check=False).returncode == 66
    assert [b["pattern"] for b in inst.cli_json("ban", "list")["items"]] == ["spammer@spam.example"]
    again = ingest(inst, make_mail(subject="More pills", sender="spammer@spam.example"))
    assert (again["outcome"], again["reason"]) == ("blocked", "banned")
    assert inst.query("SELECT count(*) AS n FROM import_log WHERE ticket_id IS NULL")[0]["n"] >= 2   # log kept


def test_messages_and_tickets_are_edited_and_deleted_from_the_browser_after_a_confirmation(
        tmp_path: Path, database_url: str):
    inst = Instance(tmp_path, database_url=database_url)
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada", "--admin")
    inst.cli("staff", "passwd", "ada", input=f"{PASSWORD}\n".encode())
    tid = ingest(inst, make_mail(subject="Printer", body="It burns.\n"))["ticket"]
    assert ingest(inst, make_mail(subject=f"Re: [Ticket #{tid}] Printer", body="Still.\n"))["ticket"] == tid
    spam = [ingest(inst, make_mail(subject=f"Pills {n}", sender=f"s{n}@spam.example"))["ticket"] for n in range(2)]
    first, second = (m["id"] for m in inst.cli_json("ticket", "show", tid)["messages"])
    with serving(inst) as port:
        b = Browser(port)
        assert b.sign_in("ada")[0] == 303
        page = b.request(f"/tickets/{tid}?edit={second}")[2]
        csrf = Browser.csrf(page)
        assert f'action="/tickets/{tid}/messages/{second}/edit"' in page
        assert "Still." in page.split(f'id="edit-{second}"')[1].split("</textarea>")[0]
        status, _, _ = b.request(f"/tickets/{tid}/messages/{second}/edit", {"csrf": csrf, "body": "Still burning."})
        assert status == 303
        assert inst.cli_json("ticket", "show", tid)["messages"][1]["body"] == "Still burning."
        # Delete asks first: this message, then (the first) the whole ticket.
        status, _, page = b.request(f"/tickets/{tid}/messages/{second}/delete", {"csrf": csrf})
        assert status == 200 and "Delete this message?" in page
        assert len(inst.cli_json("ticket", "show", tid)["messages"]) == 2          # nothing yet
        status, _, _ = b.request(f"/tickets/{tid}/messages/{second}/delete", {"csrf": csrf, "confirm": "1"})
        assert status == 303 and len(inst.cli_json("ticket", "show", tid)["messages"]) == 1
        status, _, page = b.request(f"/tickets/{tid}/messages/{first}/delete", {"csrf": csrf})
        assert "Delete the whole ticket?" in page
        status, headers, _ = b.request(f"/tickets/{tid}/messages/{first}/delete", {"csrf": csrf, "confirm": "1"})
        assert status == 303 and headers["location"] == f"/tickets?done=deleted-{tid}"
        assert b.request(f"/tickets/{tid}")[0] == 404
        # Bulk: block sender & delete.
        status, _, page = b.request("/tickets/delete", {"csrf": csrf, "tid": spam, "ban": "1"})
        assert status == 200 and "Block senders and delete" in page and inst.cli_json("ticket", "list")["count"] == 2
        status, headers, _ = b.request("/tickets/delete", {"csrf": csrf, "tid": spam, "ban": "1", "confirm": "1"})
        assert status == 303 and "Deleted: 2." in b.request(headers["location"])[2]
    assert inst.cli_json("ticket", "list")["items"] == []
    assert sorted(r["pattern"] for r in inst.cli_json("ban", "list")["items"]) == ["s0@spam.example",
                                                                                  "s1@spam.example"]
