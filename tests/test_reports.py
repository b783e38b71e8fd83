"""Reports beside the ratings (issue 13, point 6; seed: Ticket Feedback Scores, Ratings Reviewer): reply
ratings and feedback per staff member and department over a range, from the store, ``ticketd report ratings``
and ``/reports/ratings``, on both engines. Tickets, replies, ratings and feedback are made through the desk on
a fake clock set relative to the real one, so that the CLI's and the page's default range (the last 30 days,
by the daemon's own clock) keeps some ratings in and leaves one out."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.clock import Clock, iso
from maild.desk.events import Actor
from maild.spool import Incoming
from maild.store import inbound, tickets
from maild.store.reports import RatingsReport, ratings_report
from tests.helpers import Instance
from tests.test_exit_codes import NOT_FOUND, USAGE, readme_codes
from tests.test_web import serving
from tests.webclient import PASSWORD, Browser

pytestmark = pytest.mark.both_engines

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
B = NOW - timedelta(days=10)      # the ratings and feedback inside the default range happen from here on
OLD = NOW - timedelta(days=41)    # ... and these before it


@dataclass
class World:
    """What :func:`build` made: tickets (by name → TID) and staff replies (by name → message id)."""

    tids: dict[str, str] = field(default_factory=dict)
    replies: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)        # ticket name → row id


def staffed(tmp_path: Path, database_url: str) -> Instance:
    inst = Instance(tmp_path, database_url=database_url)
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada Lovelace", "--admin")
    inst.cli("staff", "add", "dora@helpdesk.example", "--name", "Dora Tech", "--departments", "Technical Support")
    inst.cli("staff", "add", "bill@helpdesk.example", "--name", "Bill Money", "--departments", "Billing")
    return inst


class Maker:
    """The desk on a fake clock: client mail through the pipeline, staff replies, client ratings, feedback."""

    def __init__(self, app: App, now: list[datetime], world: World) -> None:
        self.app, self.now, self.world = app, now, world
        assert app.db is not None
        self.db = app.db

    def at(self, when: datetime) -> None:
        self.now[0] = when

    async def mail(self, name: str, sender: str, to: str = "support@helpdesk.example") -> str:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, to, f"About {name}"
        msg["Message-ID"] = f"<{name}.{abs(hash((name, sender)))}@client.example>"
        msg.set_content(f"Help with {name}, please.\n")
        assert self.app.worker is not None
        async with self.db.transaction():
            await inbound.insert(self.db, [Incoming(raw=msg.as_bytes(), source="smtp", envelope_from=sender,
                                                    envelope_to=[to])], self.app.clock.stamp())
        results = await self.app.worker.drain()
        assert results and results[-1].tid, results
        tid = str(results[-1].tid)
        ticket = await tickets.by_tid(self.db, tid)
        assert ticket is not None
        self.world.tids[name], self.world.ids[name] = tid, ticket.id
        return tid

    async def reply(self, name: str, username: str, ticket: str, body: str) -> int:
        result = await self.app.desk.reply(await self.app.desk.actor(username), self.world.tids[ticket], body)
        assert result.message_id is not None
        self.world.replies[name] = result.message_id
        return result.message_id

    async def client(self, ticket: str) -> Actor:
        row = await tickets.by_tid(self.db, self.world.tids[ticket])
        assert row is not None
        return Actor(kind="client", email=row.client_email)

    async def rate(self, reply: str, ticket: str, stars: int, when: datetime) -> None:
        self.at(when)
        await self.app.desk.rate_reply(await self.client(ticket), self.world.tids[ticket], self.world.replies[reply],
                                       stars)

    async def ask(self, ticket: str, when: datetime) -> None:
        """Close the ticket and send its feedback request, at ``when``."""
        self.at(when)
        await self.app.desk.close(Actor.system("agent"), self.world.tids[ticket])
        asked = await self.app.desk.request_feedback([self.world.ids[ticket]], list(self.app.departments.values()),
                                                     iso(when - timedelta(hours=1)), iso(when))
        assert asked == [self.world.ids[ticket]]

    async def answer(self, ticket: str, score: int, comment: str, when: datetime) -> None:
        self.at(when)
        await self.app.desk.give_feedback(await self.client(ticket), self.world.tids[ticket], score, comment)


async def build(inst: Instance, more: Callable[[Maker], Awaitable[None]] | None = None) -> World:
    """Four rated tickets in the default range, one before it; feedback on three of them, one answered with
    a comment, one without, one not answered; an old answered one."""
    now, world = [OLD], World()
    async with App(config.load(inst.config), clock=Clock(lambda: now[0])) as app:
        m = Maker(app, now, world)
        # Before the range: Dora's reply rated 5, feedback 2 "Slow."
        await m.mail("old", "dan@client.example")
        await m.reply("old", "dora", "old", "An old answer.")
        await m.rate("old", "old", 5, OLD + timedelta(days=1))
        await m.ask("old", OLD + timedelta(days=2))
        await m.answer("old", 2, "Slow.", OLD + timedelta(days=3))
        # In the range.
        m.at(B)
        await m.mail("printer", "alice@client.example")
        await m.mail("network", "bob@client.example")
        await m.mail("invoice", "carol@client.example", to="billing@helpdesk.example")
        await m.reply("printer-dora", "dora", "printer", "Turn it off and on again.")
        await m.reply("printer-ada", "ada", "printer", "The printer was replaced; " + "really " * 60 + "sorry.")
        await m.reply("network", "dora", "network", "The switch is back.")
        await m.reply("invoice", "bill", "invoice", "Your refund is on its way.")
        await m.rate("printer-dora", "printer", 5, B + timedelta(hours=1))
        await m.rate("printer-ada", "printer", 2, B + timedelta(hours=1))
        await m.rate("network", "network", 4, B + timedelta(hours=2))
        await m.rate("network", "network", 3, B + timedelta(hours=3))          # a later rating replaces it
        await m.rate("invoice", "invoice", 1, B + timedelta(hours=4))
        for ticket in ("printer", "network", "invoice"):
            await m.ask(ticket, B + timedelta(hours=6))
        await m.answer("printer", 9, "  Quick and kind.  ", B + timedelta(hours=7))
        await m.answer("network", 4, "", B + timedelta(hours=8))
        if more is not None:
            await more(m)
    return world


def stars(*counts: int) -> dict[int, int]:
    return dict(zip(range(1, 6), counts, strict=True))


def staff_rows(report: RatingsReport) -> list[tuple]:
    return [(s.username, s.name, s.ratings.count, s.ratings.average, s.ratings.stars) for s in report.staff_ratings]


async def test_the_figures_per_staff_member_and_department_over_a_range(tmp_path: Path, database_url: str):
    inst = staffed(tmp_path, database_url)
    world = await build(inst)
    async with App(config.load(inst.config)) as app:
        assert app.db is not None
        tech, billing = app.departments["Technical Support"], app.departments["Billing"]
        report = await ratings_report(app.db, iso(NOW - timedelta(days=30)), iso(NOW), None)
        # Reply ratings: 5 and 2 on the printer, 3 (the second rating) on the network, 1 on the invoice.
        assert (report.ratings.count, report.ratings.average, report.ratings.stars) == (4, 2.75, stars(1, 1, 1, 0, 1))
        assert staff_rows(report) == [("ada", "Ada Lovelace", 1, 2.0, stars(0, 1, 0, 0, 0)),
                                      ("bill", "Bill Money", 1, 1.0, stars(1, 0, 0, 0, 0)),
                                      ("dora", "Dora Tech", 2, 4.0, stars(0, 0, 1, 0, 1))]
        assert [(d.department, d.ratings.count, d.ratings.average, d.ratings.stars)
                for d in report.department_ratings] == [("Billing", 1, 1.0, stars(1, 0, 0, 0, 0)),
                                                        ("Technical Support", 3, 3.33, stars(0, 1, 1, 0, 1))]
        # The ratings reviewer: lowest first, each with its ticket, staff member and the reply's start.
        assert [(x.tid, x.message_id, x.username, x.rating) for x in report.lowest] == [
            (world.tids["invoice"], world.replies["invoice"], "bill", 1),
            (world.tids["printer"], world.replies["printer-ada"], "ada", 2),
            (world.tids["network"], world.replies["network"], "dora", 3),
            (world.tids["printer"], world.replies["printer-dora"], "dora", 5)]
        ada_reply = report.lowest[1]
        assert ada_reply.rated_at == iso(B + timedelta(hours=1)) and ada_reply.department == "Technical Support"
        assert len(ada_reply.excerpt) == 200 and ada_reply.excerpt.startswith("The printer was replaced; really")
        assert report.lowest_truncated is False
        # Feedback: three requests in the range, two answers (9 and 4); Billing's is not answered.
        assert (report.feedback_requested, report.feedback_answered, report.feedback_average) == (3, 2, 6.5)
        assert [(d.department, d.requested, d.answered, d.average) for d in report.department_feedback] == [
            ("Billing", 1, 0, None), ("Technical Support", 2, 2, 6.5)]
        # An answer counts for every staff member who replied on its ticket.
        assert [(s.username, s.answered, s.average) for s in report.staff_feedback] == [
            ("ada", 1, 9.0), ("dora", 2, 6.5)]
        assert [(c.tid, c.subject, c.department, c.score, c.comment, c.answered_at, c.staff)
                for c in report.comments] == [(world.tids["printer"], "About printer", "Technical Support", 9,
                                               "Quick and kind.", iso(B + timedelta(hours=7)), ["ada", "dora"])]

        # A wider range takes in the old rating and feedback.
        wide = await ratings_report(app.db, iso(OLD), iso(NOW), None)
        assert (wide.ratings.count, [(s.username, s.ratings.count, s.ratings.average) for s in wide.staff_ratings]) \
            == (5, [("ada", 1, 2.0), ("bill", 1, 1.0), ("dora", 3, 4.33)])
        assert (wide.feedback_requested, wide.feedback_answered, wide.feedback_average) == (4, 3, 5.0)
        assert [c.comment for c in wide.comments] == ["Quick and kind.", "Slow."]          # newest first
        # [since, until): a rating at ``since`` is in, one at ``until`` is not.
        part = await ratings_report(app.db, iso(B + timedelta(hours=1)), iso(B + timedelta(hours=4)), None)
        assert sorted(x.rating for x in part.lowest) == [2, 3, 5] and part.ratings.count == 3
        assert (part.feedback_requested, part.feedback_answered) == (0, 0) and part.staff_feedback == []
        # Departments: Technical Support's tickets only; none at all.
        mine = await ratings_report(app.db, iso(NOW - timedelta(days=30)), iso(NOW), [tech])
        assert [(s.username, s.ratings.count) for s in mine.staff_ratings] == [("ada", 1), ("dora", 2)]
        assert [d.department for d in mine.department_ratings] == ["Technical Support"]
        assert [d.department for d in mine.department_feedback] == ["Technical Support"]
        assert (mine.ratings.count, mine.feedback_requested, len(mine.lowest)) == (3, 2, 3)
        assert [x.tid for x in (await ratings_report(app.db, iso(OLD), iso(NOW), [billing])).lowest] == [
            world.tids["invoice"]]
        nothing = await ratings_report(app.db, iso(OLD), iso(NOW), [])
        assert (nothing.ratings.count, nothing.staff_ratings, nothing.comments, nothing.lowest) == (0, [], [], [])
        assert nothing.ratings.average is None and nothing.feedback_average is None
        # The lists are capped, and say so.
        capped = await ratings_report(app.db, iso(OLD), iso(NOW), None, limit=2)
        assert [x.rating for x in capped.lowest] == [1, 2] and capped.lowest_truncated is True
        assert len(capped.comments) == 2 and capped.comments_truncated is False


async def test_feedback_on_a_ticket_merged_away_counts_for_who_replied_where_it_lives_on(tmp_path: Path,
                                                                                          database_url: str):
    inst = staffed(tmp_path, database_url)

    async def merged(m: Maker) -> None:
        m.at(B + timedelta(days=1))
        await m.mail("first", "erin@client.example")
        await m.mail("second", "erin@client.example")
        await m.reply("second", "dora", "second", "Done.")
        await m.ask("second", B + timedelta(days=1, hours=1))
        await m.answer("second", 10, "Merged later.", B + timedelta(days=1, hours=2))
        m.at(B + timedelta(days=1, hours=3))
        await m.reply("first", "ada", "first", "Also done.")
        await m.app.desk.merge(await m.app.desk.actor("ada"), [m.world.tids["first"], m.world.tids["second"]])

    world = await build(inst, merged)
    async with App(config.load(inst.config)) as app:
        assert app.db is not None
        ticket = await tickets.by_tid(app.db, world.tids["second"])
        assert ticket is not None and ticket.merged_into == world.ids["first"]
        report = await ratings_report(app.db, iso(B + timedelta(days=1)), iso(NOW), None)
        # Dora's reply moved to the ticket it was merged into, beside Ada's: the answer counts for both.
        assert [(c.tid, c.score, c.staff) for c in report.comments] == [(world.tids["second"], 10, ["ada", "dora"])]
        assert [(s.username, s.answered, s.average) for s in report.staff_feedback] == [("ada", 1, 10.0),
                                                                                        ("dora", 1, 10.0)]


def table(page: str, table_id: str) -> list[list[str]]:
    """The body rows of the page's table ``table_id``, as the text of each cell."""
    found = re.search(rf'<table class="list" id="{table_id}">(.*?)</table>', page, re.S)
    assert found, f"no table {table_id} in the page"
    body = found.group(1).split("<tbody>", 1)[1]
    return [[" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


async def test_the_report_from_the_command_line_and_in_the_browser(tmp_path: Path, database_url: str):
    inst = staffed(tmp_path, database_url)
    world = await build(inst)
    # The command line: the last 30 days by default (the old rating and feedback left out).
    report = inst.cli_json("report", "ratings")
    assert isinstance(report, dict)
    assert report["until"] >= iso(NOW) and report["since"] == iso(datetime.strptime(
        report["until"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) - timedelta(days=30))
    assert report["ratings"] == {"count": 4, "average": 2.75, "stars": {"1": 1, "2": 1, "3": 1, "4": 0, "5": 1}}
    assert [(s["username"], s["name"], s["ratings"]["count"], s["ratings"]["average"], s["ratings"]["stars"])
            for s in report["staff_ratings"]] == [
        ("ada", "Ada Lovelace", 1, 2.0, {"1": 0, "2": 1, "3": 0, "4": 0, "5": 0}),
        ("bill", "Bill Money", 1, 1.0, {"1": 1, "2": 0, "3": 0, "4": 0, "5": 0}),
        ("dora", "Dora Tech", 2, 4.0, {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1})]
    assert [(d["department"], d["requested"], d["answered"], d["average"])
            for d in report["department_feedback"]] == [("Billing", 1, 0, None), ("Technical Support", 2, 2, 6.5)]
    assert [(c["tid"], c["score"], c["comment"], c["staff"]) for c in report["comments"]] == [
        (world.tids["printer"], 9, "Quick and kind.", ["ada", "dora"])]
    assert [x["message_id"] for x in report["lowest"]] == [world.replies[r] for r in (
        "invoice", "printer-ada", "network", "printer-dora")]
    assert report["departments"] is None and report["comments_truncated"] is False
    # One department (any case), a range of one's own; the old rating is in that one.
    tech = inst.cli_json("report", "ratings", "--department", "technical support", "--since",
                         (OLD - timedelta(days=1)).date().isoformat(), "--until", NOW.isoformat())
    assert isinstance(tech, dict)
    assert [(s["username"], s["ratings"]["count"], s["ratings"]["average"]) for s in tech["staff_ratings"]] == [
        ("ada", 1, 2.0), ("dora", 3, 4.33)]
    assert [d["department"] for d in tech["department_ratings"]] == ["Technical Support"]
    # For people: tables.
    out = inst.cli("report", "ratings").stdout.decode()
    assert "Reply ratings: 4 ratings, average 2.75; feedback: 3 requested, 2 answered, average 6.50" in out
    assert re.search(r"^dora +Dora Tech +2 +4\.00 +0 +0 +1 +0 +1$", out, re.M), out
    assert re.search(r"^Billing +1 +0 +-$", out, re.M), out
    assert re.search(rf"^{world.tids['printer']} .* 9 +ada,dora +Quick and kind\.$", out, re.M), out
    # Exit codes: a date that means nothing, an empty range, no such department.
    codes = readme_codes()
    for args, kind, said in ((["--since", "yesterday"], USAGE, "--since 'yesterday'"),
                             (["--since", "2026-03-01", "--until", "2026-02-01"], USAGE, "is not before --until"),
                             (["--until", "9999-12-31T23:00-05:00"], USAGE, "between the years 1000 and 9999"),
                             (["--department", "Nope"], NOT_FOUND, "no department 'Nope'")):
        proc = inst.cli("report", "ratings", *args, check=False)
        assert proc.returncode == codes[kind] and said in proc.stderr.decode(), proc.stderr
        assert b"Traceback" not in proc.stderr

    # The browser: the same figures; a staff member sees their departments only.
    for user in ("ada", "dora"):
        inst.cli("staff", "passwd", user, input=f"{PASSWORD}\n".encode())
    with serving(inst) as port:
        ada, dora = Browser(port), Browser(port)
        assert ada.sign_in("ada")[0] == 303 and dora.sign_in("dora")[0] == 303
        status, _, page = ada.request("/reports/ratings")
        assert status == 200, page
        assert table(page, "staff-ratings") == [["Ada Lovelace ada", "1", "2.00", "0", "1", "0", "0", "0"],
                                                ["Bill Money bill", "1", "1.00", "1", "0", "0", "0", "0"],
                                                ["Dora Tech dora", "2", "4.00", "0", "0", "1", "0", "1"]]
        assert table(page, "department-ratings") == [["Billing", "1", "1.00", "1", "0", "0", "0", "0"],
                                                     ["Technical Support", "3", "3.33", "0", "1", "1", "0", "1"]]
        assert table(page, "department-feedback") == [["Billing", "1", "0", "–"],
                                                      ["Technical Support", "2", "2", "6.50"]]
        assert table(page, "staff-feedback") == [["Ada Lovelace ada", "1", "9.00"], ["Dora Tech dora", "2", "6.50"]]
        assert [row[:3] for row in table(page, "lowest")] == [
            [f"#{world.tids['invoice']} Billing", "1★", "Bill Money"],
            [f"#{world.tids['printer']} Technical Support", "2★", "Ada Lovelace"],
            [f"#{world.tids['network']} Technical Support", "3★", "Dora Tech"],
            [f"#{world.tids['printer']} Technical Support", "5★", "Dora Tech"]]
        assert table(page, "comments") == [[f"#{world.tids['printer']} About printer Technical Support", "9",
                                            "Quick and kind.", (B + timedelta(hours=7)).strftime("%Y-%m-%d %H:%M"),
                                            "ada, dora"]]
        # Dates of one's own (the old ones in), as the form's date inputs send them.
        since = (OLD - timedelta(days=1)).date().isoformat()
        status, _, page = ada.request(f"/reports/ratings?since={since}&until=")
        assert status == 200 and table(page, "staff-ratings")[2][:3] == ["Dora Tech dora", "3", "4.33"]
        assert f'name="since" value="{since}"' in page
        # Dora works in Technical Support: Billing's figures, tickets and staff are not hers to see.
        status, _, page = dora.request("/reports/ratings")
        assert status == 200, page
        assert table(page, "staff-ratings") == [["Ada Lovelace ada", "1", "2.00", "0", "1", "0", "0", "0"],
                                                ["Dora Tech dora", "2", "4.00", "0", "0", "1", "0", "1"]]
        assert [row[0] for row in table(page, "department-ratings") + table(page, "department-feedback")] == [
            "Technical Support", "Technical Support"]
        assert "Billing" not in page and "Bill Money" not in page and world.tids["invoice"] not in page
        status, _, page = dora.request("/reports/ratings?department=Billing")
        assert status == 400 and "no department &#39;Billing&#39; of yours" in page and "Bill Money" not in page
        # Bad dates: said on the page, never a server error.
        for query, said in (("since=2026-02-30", "since &#39;2026-02-30&#39;: expected a date"),
                            ("since=2026-03-02&until=2026-03-01", "is not before"),
                            ("until=9999-12-31T23:00-05:00", "between the years 1000 and 9999")):
            status, _, page = ada.request(f"/reports/ratings?{query}")
            assert status == 400 and said in page, page
            assert 'id="staff-ratings"' not in page
