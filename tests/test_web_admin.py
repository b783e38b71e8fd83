"""The mail import log, the outbox, predefined replies and /metrics in the browser, over real HTTP
(issue 12): filters, the parsed and raw views, importing a blocked reply and reprocessing a failure (the same
calls as the CLI), department limits, retrying a failed mail, the metrics allow-list."""

from __future__ import annotations

import html
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Instance, ingest, make_mail
from tests.relay import Relay
from tests.test_web import serving
from tests.webclient import PASSWORD, Browser


def staffed(inst: Instance) -> Instance:
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada Lovelace", "--admin")
    inst.cli("staff", "add", "dora@helpdesk.example", "--name", "Dora Tech", "--departments", "Technical Support")
    inst.cli("staff", "add", "bill@helpdesk.example", "--name", "Bill Money", "--departments", "Billing")
    for user in ("ada", "dora", "bill"):
        inst.cli("staff", "passwd", user, input=f"{PASSWORD}\n".encode())
    return inst


def signed_in(port: int, username: str) -> Browser:
    b = Browser(port)
    assert b.sign_in(username)[0] == 303
    return b


@pytest.fixture
def site(tmp_path: Path, database_url: str, relay: Relay) -> Iterator[tuple[Instance, int]]:
    inst = staffed(Instance(tmp_path, database_url=database_url, extra_config=relay.outbound_toml()))
    with serving(inst) as port:
        yield inst, port


@pytest.mark.both_engines
def test_a_blocked_reply_is_found_viewed_and_imported_from_the_import_log(site: tuple[Instance, int]):
    inst, port = site
    tid = ingest(inst, make_mail(subject="Invoice question", sender="owner@acme.example"))["ticket"]
    stranger = make_mail(subject=f"Re: [Ticket #{tid}] Invoice question", sender="mallory@evil.example",
                         body="Please send the invoice to me instead.")
    blocked = ingest(inst, stranger)
    assert (blocked["outcome"], blocked["reason"]) == ("blocked", "unauthorised_sender")
    ingest(inst, make_mail(subject="Nobody home", to="nobody@elsewhere.example"))
    ada, dora, bill = (signed_in(port, u) for u in ("ada", "dora", "bill"))
    # The ticket page says mail was blocked, above the subject, and links to it.
    _, _, page = ada.request(f"/tickets/{tid}")
    assert "Blocked replies" in page and page.index("Blocked replies") < page.index("<h1>")
    (entry,) = re.findall(r'href="/import-log/(\d+)"', page)
    # Filters: outcome, reason, source, sender, date.
    def ids(b: Browser, query: str) -> list[str]:
        status, _, listing = b.request(f"/import-log?{query}")
        assert status == 200, listing
        return list(dict.fromkeys(re.findall(r'href="/import-log/(\d+)"', listing)))
    assert len(ids(ada, "")) == 3
    assert ids(ada, "outcome=blocked:unauthorised_sender") == [entry]
    assert len(ids(ada, "outcome=blocked")) == 2 and len(ids(ada, "outcome=new_ticket")) == 1
    assert ids(ada, "sender=mallory") == [entry] and ids(ada, "source=smtp") == []
    assert len(ids(ada, "source=ingest")) == 3 and ids(ada, "since=2999-01-01") == []
    assert "expected one of" in ada.request("/import-log?outcome=bogus")[2]
    # Department limits: Dora (Technical Support) sees her department's entries only; mail that reached no
    # department is for admins.
    assert ids(dora, "") == [entry, ids(ada, "outcome=new_ticket")[0]]
    assert ids(bill, "") == [] and bill.request(f"/import-log/{entry}")[0] == 404
    # The parsed view and the raw message.
    status, _, page = ada.request(f"/import-log/{entry}")
    assert status == 200 and "unauthorised sender" in page and "Please send the invoice to me instead." in page
    status, _, page = ada.request(f"/import-log/{entry}?view=raw")
    assert "Message-ID: " + html.escape(stranger["Message-ID"]) in page
    assert "From: Alice Client &lt;mallory@evil.example&gt;" in page
    status, headers, raw = ada.raw(f"/import-log/{entry}?view=raw&download=1")
    assert raw == stranger.as_bytes() and headers["content-disposition"].startswith("attachment;")
    # Import it as a note, through the same call as the CLI's; the second try is refused.
    csrf = Browser.csrf(page)
    assert bill.request(f"/import-log/{entry}/import", {"csrf": Browser.csrf(bill.request("/tickets")[2]),
                                                        "target": "ticket", "ticket": tid, "kind": "note"})[0] == 404
    status, headers, _ = dora.request(f"/import-log/{entry}/import", {"csrf": "wrong", "ticket": tid, "kind": "note"})
    assert status == 403
    status, headers, page = ada.request(f"/import-log/{entry}/import",
                                        {"csrf": csrf, "target": "ticket", "ticket": tid, "kind": "note"})
    assert status == 303 and headers["location"].startswith(f"/tickets/{tid}"), page
    shown = inst.cli_json("ticket", "show", tid)
    assert [(m["kind"], m["author_email"]) for m in shown["messages"]][-1] == ("note", "mallory@evil.example")
    assert inst.cli_json("import-log", "show", entry)["imported_by"] == "web:ada"
    assert "Blocked replies" not in ada.request(f"/tickets/{tid}")[2]
    status, _, page = ada.request(f"/import-log/{entry}/import", {"csrf": csrf, "ticket": tid, "kind": "note"})
    assert status == 409 and "imported already" in page


@pytest.mark.sqlite_only   # the failure is injected with a SQLite trigger, as in test_cli
def test_a_failed_message_is_reprocessed_from_its_page_by_an_admin(site: tuple[Instance, int]):
    inst, port = site
    conn = sqlite3.connect(inst.db_path, isolation_level=None)
    conn.execute("CREATE TRIGGER boom BEFORE INSERT ON tickets WHEN NEW.subject = 'boom'"
                 " BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    failed = ingest(inst, make_mail(subject="boom"))
    assert failed["outcome"] == "failed"
    ada, dora = signed_in(port, "ada"), signed_in(port, "dora")
    (entry,) = re.findall(r'href="/import-log/(\d+)"', ada.request("/import-log?outcome=failed")[2])[:1]
    _, _, page = ada.request(f"/import-log/{entry}")
    assert "injected failure" in page and "Process again" in page
    csrf = Browser.csrf(page)
    assert dora.request(f"/import-log/{entry}/reprocess", {"csrf": Browser.csrf(dora.request("/tickets")[2])}
                        )[0] == 404                         # admins only
    status, headers, _ = ada.request(f"/import-log/{entry}/reprocess", {"csrf": csrf})
    assert status == 303                                     # the cause is still there: it fails again
    assert "Processed again: failed" in ada.request(headers["location"])[2]
    conn.execute("DROP TRIGGER boom")
    conn.close()
    status, headers, _ = ada.request(f"/import-log/{entry}/reprocess", {"csrf": csrf})
    assert status == 303
    _, _, page = ada.request(headers["location"])
    assert "Processed again: new_ticket" in page
    status, _, page = ada.request(f"/import-log/{entry}/reprocess", {"csrf": csrf})
    assert status == 409 and "only failed entries are reprocessed" in page


@pytest.mark.both_engines
def test_the_outbox_page_shows_and_retries_a_failed_mail_for_admins_only(site: tuple[Instance, int], relay: Relay):
    inst, port = site
    relay.refuse["alice@client.example"] = "550 5.1.1 No such user"
    ingest(inst, make_mail(subject="Printer on fire"))
    ada, dora = signed_in(port, "ada"), signed_in(port, "dora")
    deadline_page = ""
    for _ in range(200):
        _, _, deadline_page = ada.request("/outbox?state=failed")
        if "550 5.1.1 No such user" in deadline_page:
            break
        time.sleep(0.1)
    assert "550 5.1.1 No such user" in deadline_page and "Retry" in deadline_page
    (outbox_id,) = re.findall(r'action="/outbox/(\d+)/retry"', deadline_page)
    assert dora.request("/outbox")[0] == 404 and "/outbox" not in dora.request("/tickets")[2]
    del relay.refuse["alice@client.example"]
    csrf = Browser.csrf(deadline_page)
    assert ada.request(f"/outbox/{outbox_id}/retry", {"csrf": "wrong"})[0] == 403
    status, headers, _ = ada.request(f"/outbox/{outbox_id}/retry", {"csrf": csrf})
    assert status == 303
    (mail,) = relay.wait_for(1)
    assert mail.rcpt_tos == ("alice@client.example",) or list(mail.rcpt_tos) == ["alice@client.example"]
    status, _, page = ada.request(f"/outbox/{outbox_id}/retry", {"csrf": csrf})
    for _ in range(100):
        if status == 409:
            break
        time.sleep(0.1)
        status, _, page = ada.request(f"/outbox/{outbox_id}/retry", {"csrf": csrf})
    assert status == 409 and "not sent twice" in page
    assert "IMAP accounts" in ada.request("/outbox")[2]


@pytest.mark.both_engines
def test_predefined_replies_are_managed_and_inserted_into_a_reply(site: tuple[Instance, int]):
    inst, port = site
    tid = ingest(inst, make_mail(subject="Password reset"))["ticket"]
    inst.cli("predefined", "add", "Password reset steps", "--body-file", "-",
             input=b"Hello [FIRSTNAME],\n\nuse the *Forgot password* link.\n")
    dora = signed_in(port, "dora")
    _, _, page = dora.request("/predefined")
    assert "Password reset steps" in page
    csrf = Browser.csrf(page)
    assert dora.request("/predefined", {"csrf": csrf, "title": "Password reset steps", "body": "x"})[0] == 422
    status, _, _ = dora.request("/predefined", {"csrf": csrf, "title": "Outage notice", "body": "We know. [NAME]"})
    assert status == 303
    listed = inst.cli_json("predefined", "list")["items"]
    assert [r["title"] for r in listed] == ["Outage notice", "Password reset steps"]
    # Searchable by title on the ticket page; choosing one puts its text in the reply box.
    _, _, page = dora.request(f"/tickets/{tid}?pq=outage")
    assert "Outage notice" in page and "Password reset steps" not in page.split('class="predefined-list"')[1][:400]
    (link,) = re.findall(r'href="(/tickets/\d+\?insert=\d+[^"]*)"', page)
    _, _, page = dora.request(link.replace("&amp;", "&"))
    assert "We know. [NAME]</textarea>" in page
    outage = next(r for r in listed if r["title"] == "Outage notice")
    assert dora.request(f"/predefined/{outage['id']}", {"csrf": csrf, "action": "delete"})[0] == 303
    assert [r["title"] for r in inst.cli_json("predefined", "list")["items"]] == ["Password reset steps"]


@pytest.mark.both_engines
def test_metrics_need_an_allowed_address_or_a_session(tmp_path: Path, database_url: str):
    inst = staffed(Instance(tmp_path, database_url=database_url))
    ingest(inst, make_mail())
    with serving(inst) as port:
        assert Browser(port).request("/login")[0] == 200
        for _ in range(50):     # the request's time is recorded once its answer has gone out
            status, headers, body = Browser(port).request("/metrics")     # 127.0.0.1 is allowed by default
            if 'ticketd_web_request_seconds_count{method="GET",route="login"} 1.0' in body:
                break
            time.sleep(0.05)
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert 'ticketd_messages_total{outcome="new_ticket",source="ingest"} 1.0' in body
        for name in ("ticketd_spool_backlog", "ticketd_outbox_mails", "ticketd_outbox_oldest_queued_age_seconds",
                     "ticketd_outbox_delivery_attempts_total", "ticketd_outbox_delivery_latency_seconds",
                     "ticketd_web_request_seconds_bucket", "ticketd_spool_oldest_age_seconds"):
            assert name in body, name
    text = inst.config.read_text().replace("[web]\n", '[web]\nmetrics_allow = ["10.0.0.0/8"]\n', 1)
    inst.config.write_text(text)
    inst.start()
    try:
        assert Browser(port).request("/metrics")[0] == 403
        assert signed_in(port, "dora").request("/metrics")[0] == 403      # the whole desk's figures: admins
        assert signed_in(port, "ada").request("/metrics")[0] == 200
        # Behind a trusted reverse proxy the client is the one X-Forwarded-For names: 10.1.2.3 is allowed,
        # and a forged header from an untrusted peer changes nothing.
        assert Browser(port).request("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})[0] == 403
    finally:
        assert inst.stop() == 0
        inst.close()
    inst.config.write_text(text.replace("[web]\n", '[web]\ntrusted_proxies = ["127.0.0.1"]\n', 1))
    inst.start()
    try:
        assert Browser(port).request("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})[0] == 200
        assert Browser(port).request("/metrics", headers={"X-Forwarded-For": "10.1.2.3, 192.0.2.7"})[0] == 403
        assert Browser(port).request("/metrics")[0] == 403    # the proxy itself is not in metrics_allow
        # A forged line before the proxy's own: the proxy's (the last) is what counts.
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("GET", "/metrics")
        conn.putheader("X-Forwarded-For", "10.9.9.9")       # what the client sent
        conn.putheader("X-Forwarded-For", "192.0.2.7")      # what the proxy added
        conn.endheaders()
        assert conn.getresponse().status == 403
        conn.close()
        deadline = time.monotonic() + 10
        while "client=10.1.2.3" not in inst.daemon_log():   # the access log names the client, not the proxy
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        assert inst.stop() == 0
        inst.close()
