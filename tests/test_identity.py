"""Identity and authorisation: badges, who may reply to a ticket, department policies, and an admin
importing a blocked reply."""

from __future__ import annotations

import json
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.helpers import Instance, make_mail

pytestmark = pytest.mark.both_engines  # the pipeline and the desk on SQLite and on PostgreSQL

POLICIES = """
[[departments]]
name = "Partners"
addresses = ["partners@helpdesk.example"]
accept_new = "registered"
closed_replies = "block"

[[departments]]
name = "Legal"
addresses = ["legal@helpdesk.example"]
closed_replies = "new_ticket"
"""


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Instance:
    inst = Instance(tmp_path, extra_config=POLICIES, mail_extra='trusted_authserv_ids = ["mx.helpdesk.example"]',
                    database_url=database_url)
    inst.cli("clients", "add", "owner@acme.example", "--account", "Acme", "--name", "Olivia Owner")
    inst.cli("clients", "add", "user@acme.example", "--account", "Acme", "--role", "user")
    inst.cli("clients", "add", "contact@acme.example", "--account", "Acme", "--role", "contact")
    inst.cli("clients", "add", "both@acme.example", "--account", "Acme", "--role", "user")
    inst.cli("clients", "add", "both@acme.example", "--account", "Globex", "--role", "user")
    inst.cli("clients", "add", "solo@example.org", "--role", "registered")
    inst.cli("staff", "add", "sam@helpdesk.example", "--name", "Sam Staff")
    return inst


def feed(inst: Instance, *mails) -> list[dict]:
    folder = inst.root / f"batch{len(list(inst.root.glob('batch*')))}"
    folder.mkdir()
    for i, msg in enumerate(mails):
        (folder / f"{i:03}.eml").write_bytes(msg if isinstance(msg, bytes) else msg.as_bytes())
    return inst.cli_json("ingest", str(folder))["items"]


def badges(inst: Instance, tid: str) -> list[tuple[str, str]]:
    return [(m["author_email"], m["badge"]) for m in inst.cli_json("ticket", "show", tid)["messages"]]


VERIFIED = "mx.helpdesk.example; dkim=pass (2048-bit key) header.d=helpdesk.example header.s=s1; spf=pass"


def test_badges_and_the_people_who_may_reply(desk: Instance):
    first = make_mail(subject="Server down", sender="owner@acme.example", cc="colleague@partner.example")
    (opened,) = feed(desk, first)
    tid = opened["ticket"]

    def reply(sender: str):
        return make_mail(subject=f"Re: Server down [Ticket #{tid}]", sender=sender, in_reply_to=first["Message-ID"])

    replies = [reply(s) for s in ("user@acme.example", "contact@acme.example", "colleague@partner.example",
                                  "sam@helpdesk.example", "both@acme.example")]
    replies[3]["Authentication-Results"] = VERIFIED  # our MTA checked sam's DKIM signature
    items = feed(desk, *replies)
    # The colleague came in as a CC of a known client's unverified mail: pending until staff confirm it. Sam's
    # From is verified, but staff act by replying to their notification (its signed token), not by From.
    assert [(i["outcome"], i["reason"]) for i in items] == [
        ("reply", ""), ("reply", ""), ("blocked", "unauthorised_sender"), ("blocked", "unauthorised_sender"),
        ("reply", "")]
    desk.cli("ticket", "set", tid, "--as", "sam", "--cc-add", "colleague@partner.example")
    assert [i["outcome"] for i in feed(desk, reply("colleague@partner.example"))] == ["reply"]
    assert badges(desk, tid) == [
        ("owner@acme.example", "Owner"),
        ("user@acme.example", "Authorized User"),
        ("contact@acme.example", "Sub-account"),
        ("both@acme.example", "Authorized User"),    # of this ticket's account, though in two accounts
        ("colleague@partner.example", "Guest"),      # a (now confirmed) CC recipient of the first mail
    ]


def test_verified_staff_mail_without_a_token_is_imported_by_an_admin(desk: Instance):
    first = make_mail(subject="Backup failed", sender="owner@acme.example")
    (opened,) = feed(desk, first)
    answer = make_mail(subject="Re: Backup failed", sender="sam@helpdesk.example", in_reply_to=first["Message-ID"])
    answer["Authentication-Results"] = "mx.helpdesk.example; dmarc=pass (p=reject) header.from=helpdesk.example"
    (item,) = feed(desk, answer)
    assert (item["outcome"], item["reason"]) == ("blocked", "unauthorised_sender")
    log_id = desk.cli_json("import-log", "--outcome", "blocked")["items"][0]["id"]
    desk.cli("import-log", "import", str(log_id))
    t = desk.cli_json("ticket", "show", opened["ticket"])
    assert t["status"] == "Answered"
    assert (t["messages"][-1]["kind"], t["messages"][-1]["badge"]) == ("staff_reply", "Operator")
    assert [(m["email"], m["name"], m["username"]) for m in desk.cli_json("staff", "list")["items"]] == [
        ("sam@helpdesk.example", "Sam Staff", "sam")]


def test_a_staff_address_in_from_alone_earns_nothing(desk: Instance):
    """Anyone can write a staff address into From; only a trusted server's verification counts."""
    first = make_mail(subject="Refund", sender="owner@acme.example")
    (opened,) = feed(desk, first)
    tid = opened["ticket"]

    def forged(results: list[str], sender: str = "Sam <sam@helpdesk.example>") -> bytes:
        msg = make_mail(subject=f"Re: Refund [Ticket #{tid}]", in_reply_to=first["Message-ID"],
                        body="Refund approved, send the money to mallory.")
        msg.replace_header("From", sender)
        return b"".join(f"Authentication-Results: {r}\r\n".encode() for r in results) + msg.as_bytes()

    attempts = [
        forged([]),                                                           # nothing verified it
        forged(["evil.example; dkim=pass header.d=helpdesk.example"]),      # a server we do not trust
        forged(["mx.helpdesk.example; dkim=pass header.d=evil.example"]),   # signed, but by another domain
        forged(["mx.helpdesk.example; dkim=fail header.d=helpdesk.example; spf=pass",
                "mx.helpdesk.example; dkim=pass header.d=helpdesk.example"]),  # a forged copy below ours
        forged(["mx.helpdesk.example; spf=pass smtp.mailfrom=helpdesk.example"]),  # SPF says nothing of From
        forged([VERIFIED], sender="owner@acme.example <mallory@evil.example>"),  # display-name trick
        b"Subject: Re: [Ticket #000000] steered\r\n" + forged([VERIFIED]),  # a header added on top of a signed mail
        forged(['mx.helpdesk.example; spf=pass (domain of "a);dkim=pass header.d=helpdesk.example;(b"@evil.example'
                ' designates 203.0.113.9) smtp.mailfrom=evil.example']),  # the sender's words in the MTA's comment
    ]
    items = feed(desk, *attempts)
    assert [(i["outcome"], i["reason"]) for i in items] == [("blocked", "unauthorised_sender")] * len(attempts)
    t = desk.cli_json("ticket", "show", tid)
    assert len(t["messages"]) == 1 and t["status"] == "Open"
    details = [desk.query("SELECT detail FROM import_log WHERE inbound_id = ?", (i["queue_id"],))[0]["detail"]
               for i in items]
    assert "claims staff member sam" in details[0]
    assert "repeats subject" in details[6]


def test_ambiguous_from_is_nobody(desk: Instance):
    first = make_mail(subject="Domains", sender="owner@acme.example")
    (opened,) = feed(desk, first)
    for sender in ("owner@acme.example, mallory@evil.example", "owner@acme.example <mallory@evil.example>"):
        msg = make_mail(subject=f"Re: Domains [Ticket #{opened['ticket']}]", in_reply_to=first["Message-ID"])
        msg.replace_header("From", sender)
        (item,) = feed(desk, msg)
        assert (item["outcome"], item["reason"]) == ("blocked", "unauthorised_sender"), sender
        # Nor does the envelope stand in for an unclear From: piped with SENDER=owner, still nobody.
        env = {"SENDER": "owner@acme.example", "RECIPIENT": "support@helpdesk.example"}
        msg.replace_header("Message-ID", make_msgid(domain="client.example"))  # not a duplicate of the above
        assert desk.cli("pipe", input=msg.as_bytes(), env=env).returncode == 0
        (piped,) = desk.cli_json("process")["items"]
        assert (piped["outcome"], piped["reason"]) == ("blocked", "unauthorised_sender"), sender
    plain = make_mail(subject=f"Re: Domains [Ticket #{opened['ticket']}]", in_reply_to=first["Message-ID"])
    del plain["From"]  # no From at all: the envelope sender is all there is, and it is the owner
    desk.cli("pipe", input=plain.as_bytes(), env={"SENDER": "owner@acme.example",
                                                  "RECIPIENT": "support@helpdesk.example"})
    assert desk.cli_json("process")["items"][0]["outcome"] == "reply"


def test_new_ticket_badges(desk: Instance):
    items = feed(desk, make_mail(subject="a", sender="solo@example.org"),
                 make_mail(subject="b", sender="both@acme.example"),
                 make_mail(subject="c", sender="nobody@example.net"))
    got = [badges(desk, i["ticket"])[0][1] for i in items]
    assert got == ["Registered User", "Guest", "Guest"]  # two accounts: we cannot tell which


def test_stranger_with_a_valid_token_is_blocked_then_imported_by_an_admin(desk: Instance):
    first = make_mail(subject="Invoice question", sender="owner@acme.example")
    (opened,) = feed(desk, first)
    tid = opened["ticket"]
    stranger = make_mail(subject=f"Re: [Ticket #{tid}] Invoice question", sender="mallory@evil.example",
                         body="Please send the invoice to me instead.")
    (blocked,) = feed(desk, stranger)
    assert (blocked["outcome"], blocked["reason"], blocked["ticket"]) == ("blocked", "unauthorised_sender", tid)
    assert len(desk.cli_json("ticket", "show", tid)["messages"]) == 1
    assert desk.cli_json("ticket", "show", tid)["status"] == "Open"

    log_id = desk.cli_json("import-log", "--outcome", "blocked:unauthorised_sender")["items"][0]["id"]
    out = desk.cli("import-log", "import", str(log_id), "--ticket", tid, "--as", "note")
    assert f"#{tid}" in out.stdout.decode()
    t = desk.cli_json("ticket", "show", tid)
    assert [(m["kind"], m["author_email"]) for m in t["messages"]][-1] == ("note", "mallory@evil.example")
    assert t["status"] == "Open"  # a note does not change the status
    row = json.loads(desk.cli("import-log", "show", str(log_id), "--json").stdout)
    assert row["imported_by"].startswith("cli:") and row["imported_at"]
    again = desk.cli("import-log", "import", str(log_id), "--ticket", tid, check=False)
    assert again.returncode == 65 and b"already" in again.stderr
    ok_id = desk.cli_json("import-log", "--outcome", "new_ticket")["items"][0]["id"]
    assert desk.cli("import-log", "import", str(ok_id), "--ticket", tid, check=False).returncode == 65


def test_import_goes_to_the_ticket_it_replied_to_unless_forced(desk: Instance):
    (mine,) = feed(desk, make_mail(subject="Mine", sender="owner@acme.example"))
    (other,) = feed(desk, make_mail(subject="Someone else's", sender="solo@example.org"))
    feed(desk, make_mail(subject=f"Re: [Ticket #{mine['ticket']}]", sender="stranger@example.net"))
    log_id = str(desk.cli_json("import-log", "--outcome", "blocked")["items"][0]["id"])
    wrong = desk.cli("import-log", "import", log_id, "--ticket", other["ticket"], check=False)
    assert wrong.returncode == 65 and f"#{mine['ticket']}".encode() in wrong.stderr and b"--force" in wrong.stderr
    assert len(desk.cli_json("ticket", "show", other["ticket"])["messages"]) == 1
    assert f"#{mine['ticket']}" in desk.cli("import-log", "import", log_id).stdout.decode()  # its own ticket
    assert len(desk.cli_json("ticket", "show", mine["ticket"])["messages"]) == 2
    feed(desk, make_mail(subject=f"Re: [Ticket #{mine['ticket']}] again", sender="stranger@example.net"))
    log_id = str(desk.cli_json("import-log", "--outcome", "blocked")["items"][0]["id"])
    desk.cli("import-log", "import", log_id, "--ticket", other["ticket"], "--force", "--as", "note")
    assert desk.cli_json("ticket", "show", other["ticket"])["messages"][-1]["kind"] == "note"
    (new,) = feed(desk, make_mail(to="partners@helpdesk.example", sender="nobody@example.net"))  # no ticket
    log_id = str(desk.cli_json("import-log", "--outcome", "blocked:unregistered")["items"][0]["id"])
    nowhere = desk.cli("import-log", "import", log_id, check=False)
    assert nowhere.returncode == 64 and b"--ticket" in nowhere.stderr and b"--new" in nowhere.stderr


def test_import_as_reply_sets_customer_reply(desk: Instance):
    (opened,) = feed(desk, make_mail(subject="x", sender="owner@acme.example"))
    tid = opened["ticket"]
    feed(desk, make_mail(subject=f"[Ticket #{tid}]", sender="new-colleague@acme.example"))
    log_id = desk.cli_json("import-log", "--outcome", "blocked")["items"][0]["id"]
    close(desk, tid)  # an import into a Closed ticket reopens it, as the reply itself would have
    desk.cli("import-log", "import", str(log_id), "--ticket", tid)
    t = desk.cli_json("ticket", "show", tid)
    assert t["status"] == "Customer-Reply" and t["messages"][-1]["kind"] == "reply"
    events = [(e["event"], e["actor"]) for e in t["log"]][-3:]
    assert events[0] == ("reopened", "new-colleague@acme.example")
    assert events[1] == ("client_reply", "new-colleague@acme.example")
    assert events[2][0] == "blocked_mail_imported" and events[2][1].startswith("cli:")


def test_registered_only_department(desk: Instance):
    items = feed(desk, make_mail(to="partners@helpdesk.example", sender="nobody@example.net"),
                 make_mail(to="partners@helpdesk.example", sender="solo@example.org"),
                 make_mail(to="partners@helpdesk.example", sender="contact@acme.example"))
    assert [(i["outcome"], i["reason"]) for i in items] == [
        ("blocked", "unregistered"), ("new_ticket", ""), ("new_ticket", "")]


def close(inst: Instance, tid: str) -> None:
    inst.execute("UPDATE tickets SET status = 'Closed' WHERE tid = ?", (tid,))


def test_closed_ticket_policies(desk: Instance):
    blocked_first = make_mail(to="partners@helpdesk.example", sender="owner@acme.example", subject="p")
    new_first = make_mail(to="legal@helpdesk.example", sender="owner@acme.example", subject="l")
    a, b = feed(desk, blocked_first, new_first)
    close(desk, a["ticket"])
    close(desk, b["ticket"])
    r1, r2 = feed(desk, make_mail(sender="owner@acme.example", in_reply_to=blocked_first["Message-ID"]),
                  make_mail(sender="owner@acme.example", in_reply_to=new_first["Message-ID"], subject="Re: l",
                            to="legal@helpdesk.example"))
    assert (r1["outcome"], r1["reason"], r1["ticket"]) == ("blocked", "closed_ticket", a["ticket"])
    assert r2["outcome"] == "new_ticket" and r2["ticket"] != b["ticket"]
    assert desk.cli_json("ticket", "show", r2["ticket"])["department"] == "Legal"
    assert desk.cli_json("ticket", "show", b["ticket"])["status"] == "Closed"


def test_clients_import_csv(instance: Instance, tmp_path):
    good = tmp_path / "people.csv"
    good.write_text("account,email,name,role\nInitech,peter@initech.example,Peter,owner\n"
                    "Initech,milton@initech.example,Milton,contact\n,bob@example.org,Bob,registered\n")
    out = instance.cli("clients", "import", str(good)).stdout.decode()
    assert "contact of Initech" in out and "registered user" in out
    assert len(instance.cli_json("clients", "list")["items"]) == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("account,email,name,role\nInitech,not-an-address,X,owner\nInitech,a@b.example,A,boss\n")
    proc = instance.cli("clients", "import", str(bad), check=False)
    assert proc.returncode == 65
    assert b"bad.csv:2" in proc.stderr and b"bad.csv:3" in proc.stderr
    assert len(instance.cli_json("clients", "list")["items"]) == 3  # all or nothing


def test_cc_from_a_client_of_several_accounts_stays_pending(desk: Instance):
    """Such a client is a Guest by badge (we cannot tell which account), but is known: a forged From of theirs
    must not bring in a CC recipient who then gets the staff's answers."""
    (opened,) = feed(desk, make_mail(subject="Access", sender="both@acme.example", cc="mallory@evil.example"))
    t = desk.cli_json("ticket", "show", opened["ticket"])
    assert t["messages"][0]["badge"] == "Guest"
    assert t["cc"] == [{"address": "mallory@evil.example", "state": "pending"}]
    (stranger,) = feed(desk, make_mail(subject="Hi", sender="new@stranger.example", cc="friend@stranger.example"))
    assert desk.cli_json("ticket", "show", stranger["ticket"])["cc"] == [
        {"address": "friend@stranger.example", "state": "confirmed"}]   # an unknown opener: nothing to protect
