"""The ``ticketd`` command: parses arguments and hands over to the module that does the work.

Imports are deferred to the chosen subcommand, so ``ticketd pipe`` (run once per delivered message)
loads only the config, the spool and sqlite3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from maild import __version__

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
LIST_LIMIT = 50     # rows a list shows unless --limit N or --all


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) like every other usage error, not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def _list_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--limit N`` | ``--all`` and ``--json`` of every list; the JSON says when the list was cut short."""
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--limit", metavar="N", type=_positive, default=LIST_LIMIT,
                     help=f"at most N {what} (default {LIST_LIMIT}); the output says when there were more")
    cap.add_argument("--all", dest="limit", action="store_const", const=None, help=f"all {what}, no limit")
    p.add_argument("--json", action="store_true",
                   help='print JSON: {"items": [...], "count", "limit", "truncated"}')


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="PATH", default=default,
                        help="configuration file (default: $TICKETD_CONFIG or ./ticketd.toml)")
    parser.add_argument("--state-dir", metavar="DIR", default=default,
                        help="where the database, spool, attachments and logs live (overrides the config)")


def _action(subparsers: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-subcommand (``ticketd import-log show``) that also takes the global options."""
    parser = subparsers.add_parser(name, **kwargs)  # of the same class as its parent: Parser
    _globals(parser, suppress=True)
    return parser


def _staff_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="display name (what clients see; never the username)")
    p.add_argument("--admin", action="store_true", help="an admin: every department and every action")
    p.add_argument("--departments", metavar="D,D",
                   help="departments they work in (comma-separated; '' for none; default for add: all)")
    p.add_argument("--notify", metavar="D,D", help="departments whose new-ticket and client-reply mail they get")
    p.add_argument("--signature-file", metavar="F", help="a file with their signature for replies")
    p.add_argument("--json", action="store_true", help="print the staff member as JSON")


def _ids(value: str) -> list[int]:
    try:
        ids = [int(v) for v in value.replace(" ", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected message ids such as 12,15") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected message ids such as 12,15")
    return ids


def _ticket_actions(t_sub: argparse._SubParsersAction) -> None:
    """``ticket open|reply|note|set|watch|unwatch|close|edit|delete|split|merge|revoke-links``: each through the
    desk, as ``--as USERNAME``."""

    def action(name: str, help_text: str, tid: bool = True, expect: bool = True) -> argparse.ArgumentParser:
        p = _action(t_sub, name, help=help_text, description=help_text)
        if tid:
            p.add_argument("tid", metavar="TID")
        p.add_argument("--as", dest="as_user", metavar="USERNAME", help="the staff member acting (or $TICKETD_AS)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        if expect:
            p.add_argument("--expect", metavar="FIELD=VALUE", action="append",
                           help="refuse if the ticket changed (collision detection): department, subject, priority,"
                                " client, assigned, flagged, cc, last_reply_at, status; repeatable")
        return p

    body: dict[str, Any] = {"metavar": "F", "help": "the text, from file F or - for standard input (markdown; "
                                                    "merge fields [NAME], [FIRSTNAME], [EMAIL])"}
    op = action("open", "open a ticket on behalf of a client or any name and address", tid=False, expect=False)
    op.add_argument("--department", required=True, metavar="D")
    op.add_argument("--to", required=True, metavar="EMAIL", help="the client's address")
    op.add_argument("--name", metavar="N", help="the client's name")
    op.add_argument("--subject", required=True, metavar="S")
    op.add_argument("--priority", metavar="P", help="Low, Medium or High (default: mail.default_priority)")
    op.add_argument("--body-file", **body)
    op.add_argument("--attach", metavar="PATH", action="append", help="attach a file (any type); repeatable")
    rp = action("reply", "reply to the client (status Answered unless --status); they get it by mail")
    rp.add_argument("--body-file", **body)
    rp.add_argument("--attach", metavar="PATH", action="append", help="attach a file (any type); repeatable")
    rp.add_argument("--status", metavar="S", help="the status after the reply (default Answered)")
    nt = action("note", "a private note (never shown or mailed to a client); @username mails that admin")
    nt.add_argument("--body-file", metavar="F", help="the text, from file F or - for standard input")
    st = action("set", "change department, subject, status, priority, assignee, flag, CC recipients, client,"
                       " tags, related service")
    st.add_argument("--status", metavar="S")
    st.add_argument("--priority", metavar="P")
    st.add_argument("--department", metavar="D")
    st.add_argument("--subject", metavar="S")
    st.add_argument("--client", metavar="ACCOUNT", help="associate the client account ('' for none)")
    who = st.add_mutually_exclusive_group()
    who.add_argument("--assign", metavar="USER")
    who.add_argument("--unassign", action="store_true")
    flag = st.add_mutually_exclusive_group()
    flag.add_argument("--flag", metavar="USER", help="flag the ticket to an admin (they get mail unless it is you)")
    flag.add_argument("--unflag", action="store_true")
    st.add_argument("--cc-add", metavar="ADDR", action="append", help="add (or confirm a pending) CC recipient")
    st.add_argument("--cc-remove", metavar="ADDR", action="append")
    st.add_argument("--tag", metavar="TAG", action="append", help="add a tag (to find similar tickets); repeatable")
    st.add_argument("--untag", metavar="TAG", action="append", help="remove a tag; repeatable")
    st.add_argument("--service", metavar="TEXT", help="the related service: a hostname or order number ('' for none)")
    action("watch", "watch a ticket: its replies, notes and changes by mail", expect=False)
    action("unwatch", "stop watching a ticket", expect=False)
    action("close", "close the ticket; the client gets a closure notice")
    ed = action("edit", "change a message's text (logged with what it said; nothing is mailed)")
    ed.add_argument("--message", required=True, type=int, metavar="ID", help="the message's id (show --json)")
    ed.add_argument("--body-file", metavar="F", help="the new text, from file F or - for standard input")
    dl = action("delete", "delete a message (--message), or the whole ticket; deleting the first message deletes"
                          " the ticket", expect=True)
    dl.add_argument("--message", type=int, metavar="ID", help="the message's id (show --json)")
    dl.add_argument("--ban-sender", action="store_true",
                    help="with the whole ticket: put its client's address on the ban list first (spam)")
    sp = action("split", "split messages off into a new ticket (their attachments go with them; answers to their"
                         " mail follow them)")
    sp.add_argument("--messages", required=True, metavar="ID,ID", type=_ids,
                    help="the messages' ids (ticketd ticket show TID --json: messages[].id)")
    sp.add_argument("--department", metavar="D", help="the new ticket's department (default: this ticket's)")
    sp.add_argument("--priority", metavar="P", help="the new ticket's priority (default: this ticket's)")
    sp.add_argument("--subject", metavar="S", help="the new ticket's subject (default: this ticket's)")
    sp.add_argument("--notify", action="store_true", help="send the client the new-ticket mail")
    mg = action("merge", "merge tickets: the newer ones into the oldest ([MERGED] in its subject; the status of the"
                         " one with the latest reply; one thread; old numbers, links and mail lead to it)")
    mg.add_argument("more", nargs="+", metavar="TID", help="the other tickets")
    rv = action("revoke-links", "revoke the links in the ticket's client mail (all, or one recipient's): they and"
                                " the sessions they started stop working; later mail brings new ones", expect=False)
    rv.add_argument("--recipient", metavar="EMAIL", help="only this recipient's links")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ticketd",
        description="Email-first helpdesk daemon: mail to support addresses becomes tickets and replies.",
    )
    parser.add_argument("--version", action="version", version=f"ticketd {__version__}")
    _globals(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p = _action(sub, name, help=help_text, description=description or help_text)
        return p

    p = command("serve", "run the daemon: SMTP and LMTP listeners and the pipeline worker",
                "Run the daemon. SIGTERM/SIGINT: stop accepting, finish the message in hand, exit 0.")
    p.add_argument("--smtp", metavar="HOST:PORT", help="SMTP listener (overrides smtp.listen; 'off' disables)")
    p.add_argument("--lmtp", metavar="HOST:PORT", help="LMTP listener (overrides lmtp.listen; 'off' disables)")
    p.add_argument("--web", metavar="HOST:PORT", help="web view address (overrides web.listen; 'off' disables)")

    p = command("pipe", "read one message on stdin into the spool (for an MTA pipe or alias)",
                "Read one message on stdin and commit it to the spool. Exit 0 once committed; 75 when it "
                "cannot be stored (the MTA retries); 78 for a bad configuration; 66 when --department names no "
                "department; 65 when it is over mail.max_message_size. The envelope comes from "
                "--sender/--recipient or Postfix's $SENDER/$ORIGINAL_RECIPIENT.")
    p.add_argument("--department", metavar="NAME", help="department for mail whose recipients match none")
    p.add_argument("--sender", metavar="ADDR", help="envelope sender (default: $SENDER)")
    p.add_argument("--recipient", metavar="ADDR", action="append",
                   help="envelope recipient, repeatable (default: $ORIGINAL_RECIPIENT or $RECIPIENT)")

    p = command("ingest", "spool and process .eml files, mbox files and Maildir folders, then summarise",
                "Spool and process messages from .eml files, mbox files, Maildir folders and folders of "
                ".eml files, in the order given, then print a summary of outcomes.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--department", metavar="NAME", help="department for mail whose recipients match none")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = command("process", "process what is waiting in the spool, then exit (no listeners)")
    p.add_argument("--json", action="store_true", help="print the outcomes as JSON")

    command("check-config", "validate the configuration and print the effective settings")

    p = command("migrate-db", "copy the whole install to another database (SQLite to PostgreSQL), verified",
                "Copy every table from --from to --to (creating the target's schema), then verify row counts and"
                " content hashes table by table. Stop every ticketd first. Exit 0 verified; 65 the target holds"
                " data (see --force); 70 the copy did not verify; 75 a database cannot be reached.")
    p.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="the database now in use, e.g. sqlite:///ticketd.sqlite3 (relative to the state directory)")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="the new database, e.g. postgresql://ticketd@db.example:5432/ticketd")
    p.add_argument("--force", action="store_true", help="delete what the target holds before the copy")
    p.add_argument("--json", action="store_true", help="print the tables' counts and hashes as JSON")

    p = command("import-log", "the mail import log: one row per received message",
                "List the mail import log, newest first; 'show ID' for one entry.")
    p.add_argument("--outcome", metavar="X",
                   help="new_ticket, reply, note, command, duplicate, blocked, failed, or blocked:REASON")
    p.add_argument("--since", metavar="ISO",
                   help="received at or after this time: a date or date and time (2026-11-01, 2026-11-01T12:00; UTC"
                        " unless it says otherwise)")
    _list_options(p, "entries")
    log_sub = p.add_subparsers(dest="log_command", metavar="ACTION")
    show = _action(log_sub, "show", help="one entry, with its detail (and --raw for the message)")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--raw", action="store_true", help="print the raw message as received")
    show.add_argument("--json", action="store_true", help="print JSON")
    imp = _action(log_sub, "import", help="import a blocked message into a ticket, or as a new ticket (once)",
                  description="Import a blocked message: into the ticket it was blocked from replying to (the "
                  "default), into --ticket TID, or as a --new ticket (blocked unknown_recipient, rate_limited or "
                  "unregistered mail). Mail is never put into another client's ticket without --force.")
    imp.add_argument("id", type=int, metavar="ID")
    target = imp.add_mutually_exclusive_group()
    target.add_argument("--ticket", metavar="TID",
                        help="the ticket to add it to (default: the ticket the mail was blocked from replying to)")
    target.add_argument("--new", action="store_true",
                        help="open a new ticket from it (blocked unknown_recipient, rate_limited or unregistered)")
    imp.add_argument("--department", metavar="D",
                     help="with --new: the new ticket's department (default: the one the mail was routed to)")
    imp.add_argument("--force", action="store_true",
                     help="allow a ticket other than the one it replied to, or another client's ticket")
    imp.add_argument("--as", dest="kind", choices=("reply", "note"), default="reply",
                     help="a client reply (default; sets Customer-Reply) or a private staff note")

    p = command("reprocess", "run a failed import-log entry through the pipeline again")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("imap", "import from IMAP mailboxes: status, sync, test")
    i_sub = p.add_subparsers(dest="imap_command", metavar="ACTION", required=True)
    st = _action(i_sub, "status", help="per mailbox: connected, last sync, last error, counts")
    st.add_argument("--json", action="store_true", help="print JSON")
    sy = _action(i_sub, "sync", help="import from one mailbox (or all) without the SMTP/LMTP listeners",
                          description="Import from the [[imap]] mailbox NAME (or all). With --once, import what "
                          "is there now, process it, and exit (for tests and cron-style setups); without, keep "
                          "importing until SIGTERM. Exit 77 when the login is refused, 66 for a missing folder, "
                          "75 when the server cannot be reached.")
    sy.add_argument("name", nargs="?", metavar="NAME")
    sy.add_argument("--once", action="store_true", help="import what is there now, process it, then exit")
    sy.add_argument("--json", action="store_true", help="print the summary as JSON (with --once)")
    te = _action(i_sub, "test", help="log in, list folders, report capabilities")
    te.add_argument("name", metavar="NAME")
    te.add_argument("--json", action="store_true", help="print JSON")

    p = command("ban", "the banned senders list: mail from them is blocked (reason banned)")
    b_sub = p.add_subparsers(dest="ban_command", metavar="ACTION", required=True)
    ba = _action(b_sub, "add", help="ban an address or *@domain")
    ba.add_argument("pattern", metavar="PATTERN", help="user@example.com or *@example.com")
    ba.add_argument("--reason", help="why (shown in the list and in the import log)")
    br = _action(b_sub, "remove", help="lift a ban")
    br.add_argument("pattern", metavar="PATTERN")
    bl = _action(b_sub, "list", help="the banned addresses and domains")
    _list_options(bl, "patterns")

    p = command("clients", "client accounts and their people (owner, authorised users, contacts)")
    c_sub = p.add_subparsers(dest="clients_command", metavar="ACTION", required=True)
    ca = _action(c_sub, "add", help="add a person to an account (created if new), or a registered user")
    ca.add_argument("email", metavar="EMAIL")
    ca.add_argument("--account", metavar="NAME", help="the client account (company or person)")
    ca.add_argument("--role", choices=("owner", "user", "contact", "registered"), default="owner",
                    help="owner (default), user (authorised user), contact (sub-account), or registered (no account)")
    ca.add_argument("--name", help="the person's name")
    ci = _action(c_sub, "import", help="add people from a CSV file with columns account,email,name,role")
    ci.add_argument("file", metavar="FILE.csv")
    cl = _action(c_sub, "list", help="accounts, their people and registered users")
    _list_options(cl, "people")

    p = command("staff", "staff members (their replies carry the Operator badge)")
    s_sub = p.add_subparsers(dest="staff_command", metavar="ACTION", required=True)
    sa = _action(s_sub, "add", help="add a staff member (or update the one with that address)")
    sa.add_argument("email", metavar="EMAIL")
    sa.add_argument("--username", help="login name (default: the address's local part)")
    _staff_options(sa)
    ss = _action(s_sub, "set", help="change a staff member: the options given change, the rest stay")
    ss.add_argument("username", metavar="USERNAME")
    ss.add_argument("--email", help="a new address")
    ss.add_argument("--new-username", metavar="U", help="a new login name")
    ss.add_argument("--no-admin", action="store_true", help="no longer an admin")
    _staff_options(ss)
    sp = _action(s_sub, "passwd", help="set a staff member's web password (read from standard input, or asked twice"
                                       " on a terminal); --disable/--enable turn the account off and on",
                 description="Set the password USERNAME logs in to the web view with: one line read from standard"
                 " input, or asked twice when it is a terminal. At least 10 characters. --disable turns the account"
                 " off (its sessions end; its history stays), --enable turns it back on. Exit 66: no such staff"
                 " member; 65: the password is refused.")
    sp.add_argument("username", metavar="USERNAME")
    state = sp.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="turn the account off instead of setting a password")
    state.add_argument("--enable", action="store_true", help="turn the account back on")
    sl = _action(s_sub, "list", help="staff members, their departments and notifications")
    _list_options(sl, "staff members")

    p = command("ticket", "tickets: list, show, log; and staff actions (open, reply, note, set, watch, close)",
                "List and show tickets, and act on them as a staff member (--as USERNAME or $TICKETD_AS). "
                "Exit codes: 64 usage, 65 a value refused, 66 no such ticket/staff member/department/file, "
                "75 the ticket changed since --expect (look again), 77 not allowed for that staff member.")
    t_sub = p.add_subparsers(dest="ticket_command", metavar="ACTION", required=True)
    _ticket_actions(t_sub)
    lg = _action(t_sub, "log", help="a ticket's log: every change, who made it and when")
    lg.add_argument("tid", metavar="TID")
    lg.add_argument("--json", action="store_true", help="print JSON")
    lst = _action(t_sub, "list", help="list tickets, most recent activity first")
    lst.add_argument("--status", metavar="S",
                     help="only this status: Open, Answered, Customer-Reply, On Hold, In Progress or Closed")
    _list_options(lst, "tickets")
    shw = _action(t_sub, "show", help="one ticket with its messages")
    shw.add_argument("tid", metavar="TID")
    shw.add_argument("--json", action="store_true", help="print JSON")
    lk = _action(t_sub, "links", help="the links in the ticket's client mail, per recipient: live, sent, used,"
                                      " expiry, revoked")
    lk.add_argument("tid", metavar="TID")
    lk.add_argument("--json", action="store_true", help="print JSON")

    p = command("outbox", "the outbound mail queue: list, show, retry; test the relay",
                "The outbox: one row per outbound mail and recipient, delivered by the daemon's sender.")
    o_sub = p.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    ol = _action(o_sub, "list", help="outbox mails, newest first")
    ol.add_argument("--state", choices=("queued", "sent", "failed"), help="only mails in this state")
    _list_options(ol, "mails")
    osh = _action(o_sub, "show", help="one mail: state, attempts, last error and headers (--raw: the message)")
    osh.add_argument("id", type=int, metavar="ID")
    osh.add_argument("--raw", action="store_true", help="print the message as it is sent")
    osh.add_argument("--json", action="store_true", help="print JSON")
    _action(o_sub, "retry", help="queue a failed mail again, due now (exit 66: no such mail; 65: already sent)"
            ).add_argument("id", type=int, metavar="ID")
    ot = _action(o_sub, "test", help="send one test mail through the configured transport, not via the queue",
                 description="Send one small test mail to ADDRESS through [outbound] directly and report each "
                 "step (connect, TLS, AUTH, MAIL, RCPT, DATA) with the server's answer; the maildir transport "
                 "writes the file and says where. Exit 0 when it was accepted, 69 when a step failed.")
    ot.add_argument("address", metavar="ADDRESS")
    ot.add_argument("--json", action="store_true", help="print JSON")

    p = command("feedback", "feedback requests sent to clients of closed tickets, and what came back",
                "Feedback requests: one per closed ticket in a department that asks for feedback ([feedback] and"
                " the departments' feedback key), with the client's rating and comment once given.")
    f_sub = p.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    fl = _action(f_sub, "list", help="feedback requests, newest first, with their answers")
    fl.add_argument("--answered", action="store_true", help="only those the client answered")
    _list_options(fl, "requests")

    p = command("report", "reports: reply ratings and feedback per staff member and department",
                "Reports beside the ratings (seed: Ticket Feedback Scores, Ratings Reviewer). The web view shows the"
                " same at /reports/ratings.")
    r_sub = p.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    rr = _action(r_sub, "ratings", help="reply ratings (1-5) and feedback scores (1-10) over a time range, per staff"
                                        " member and department; the lowest-rated replies and the feedback comments",
                 description="Reply ratings given and feedback answered from --since up to --until (the end excluded;"
                 " default: the last 30 days), per staff member and per department (the ticket's department now); a"
                 " feedback answer counts for every staff member who replied on its ticket. Then the lowest-rated"
                 " replies and the feedback comments, newest first (200 of each at most). Exit 64: a date that"
                 " means nothing, or --since not before --until; 66: no such department.")
    rr.add_argument("--since", metavar="ISO",
                    help="from this time: a date or date and time (2026-11-01, 2026-11-01T12:00; UTC unless it says"
                         " otherwise); default: 30 days before --until")
    rr.add_argument("--until", metavar="ISO", help="up to this time, excluded (same forms); default: now")
    rr.add_argument("--department", metavar="NAME", action="append",
                    help="only tickets in this department; repeatable (default: every department)")
    rr.add_argument("--json", action="store_true", help="print the whole report as JSON")

    p = command("predefined", "predefined replies: texts staff insert into a reply, found by title",
                "Predefined replies (seed: Support > Predefined Replies). Staff insert them into a reply on the"
                " web view's ticket page; merge fields ([NAME], [FIRSTNAME], [EMAIL]) are filled in when sent.")
    pr_sub = p.add_subparsers(dest="predefined_command", metavar="ACTION", required=True)
    pa = _action(pr_sub, "add", help="add a predefined reply (exit 65: the title is taken)")
    pa.add_argument("title", metavar="TITLE")
    pa.add_argument("--body-file", metavar="F", help="the text, from file F or - for standard input")
    pl = _action(pr_sub, "list", help="predefined replies by title")
    pl.add_argument("--search", metavar="TEXT", default="", help="only titles that hold TEXT")
    _list_options(pl, "replies")
    psh = _action(pr_sub, "show", help="one predefined reply's text")
    psh.add_argument("id", type=int, metavar="ID")
    psh.add_argument("--json", action="store_true", help="print JSON")
    _action(pr_sub, "delete", help="delete a predefined reply (exit 66: no such reply)"
            ).add_argument("id", type=int, metavar="ID")

    p = command("jobs", "the scheduled jobs: list them with their last and next run; run one now",
                "The jobs `ticketd serve` runs on a schedule ([jobs] minutes each; with several nodes, one node"
                " at a time). Each run is recorded: what it did, when, on which node.")
    j_sub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    jl = _action(j_sub, "list", help="each job: its interval, last run (result) and next run")
    jl.add_argument("--json", action="store_true", help="print JSON")
    jr = _action(j_sub, "run", help="run one job once, now or as if at --now, and print what it did",
                 description="Run job NAME once and print what it did (for cron-style set-ups, tests and admins);"
                 " it runs even when its [jobs]/config switch leaves it out of the daemon's schedule, except"
                 " where that switch is its own setting (auto_close with [autoclose] hours = 0 does nothing).")
    from maild.jobs import NAMES

    jr.add_argument("name", metavar="NAME", choices=NAMES, help=f"one of {', '.join(NAMES)}")
    jr.add_argument("--now", metavar="ISO-8601", type=_instant,
                    help="run as if it were this time (e.g. 2026-12-24T09:00:00Z; no zone means UTC)")
    jr.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _instant(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time such as 2026-12-24T09:00:00Z, got {text!r}"
                                         ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from maild import config

    try:
        settings = config.load(args.config, args.state_dir)
    except config.ConfigError as exc:
        print(f"ticketd: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.command == "pipe":
        from maild.receive import pipe

        return pipe.run(args, settings)

    from maild import logs

    logs.setup(settings.log.level)  # $TICKETD_LOG_LEVEL applied and checked by config.load
    from maild.app import StartupError
    from maild.commands import dispatch
    from maild.store.db import StorageError

    try:
        return dispatch(args, settings)
    except config.ConfigError as exc:
        print(f"ticketd: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except StartupError as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except (StorageError, OSError) as exc:
        print(f"ticketd: storage error: {exc} (database {settings.database_url.display}); check that the database"
              " is reachable, or that the state directory exists, is writable and has free space", file=sys.stderr)
        return EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
