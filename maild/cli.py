"""The ``ticketd`` command: parses arguments and hands over to the module that does the work.

Imports are deferred to the chosen subcommand, so ``ticketd pipe`` (run once per delivered message)
loads only the config, the spool and sqlite3.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from maild import __version__

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="PATH", default=default,
                        help="configuration file (default: $TICKETD_CONFIG or ./ticketd.toml)")
    parser.add_argument("--state-dir", metavar="DIR", default=default,
                        help="where the database, spool, attachments and logs live (overrides the config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketd",
        description="Email-first helpdesk daemon: mail to support addresses becomes tickets and replies.",
    )
    parser.add_argument("--version", action="version", version=f"ticketd {__version__}")
    _globals(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=description or help_text)
        _globals(p, suppress=True)
        return p

    p = command("serve", "run the daemon: SMTP and LMTP listeners and the pipeline worker",
                "Run the daemon. SIGTERM/SIGINT: stop accepting, finish the message in hand, exit 0.")
    p.add_argument("--smtp", metavar="HOST:PORT", help="SMTP listener (overrides smtp.listen; 'off' disables)")
    p.add_argument("--lmtp", metavar="HOST:PORT", help="LMTP listener (overrides lmtp.listen; 'off' disables)")
    p.add_argument("--web", metavar="HOST:PORT", help="web view address (reserved: the web view is not built yet)")

    p = command("pipe", "read one message on stdin into the spool (for an MTA pipe or alias)",
                "Read one message on stdin and commit it to the spool. Exit 0 once committed; 75 when it "
                "cannot be stored (the MTA retries); 78 for a bad configuration; 65 when it is over "
                "mail.max_message_size. The envelope comes from --sender/--recipient or Postfix's "
                "$SENDER/$ORIGINAL_RECIPIENT.")
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

    p = command("import-log", "the mail import log: one row per received message",
                "List the mail import log, newest first; 'show ID' for one entry.")
    p.add_argument("--outcome", metavar="X",
                   help="new_ticket, reply, duplicate, blocked, failed, or blocked:REASON")
    p.add_argument("--since", metavar="ISO", help="received at or after this time (e.g. 2026-11-01)")
    p.add_argument("--limit", metavar="N", type=int, default=50, help="at most N rows (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    log_sub = p.add_subparsers(dest="log_command", metavar="ACTION")
    show = log_sub.add_parser("show", help="one entry, with its detail (and --raw for the message)")
    _globals(show, suppress=True)
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--raw", action="store_true", help="print the raw message as received")
    show.add_argument("--json", action="store_true", help="print JSON")
    imp = log_sub.add_parser("import", help="import a blocked message into a ticket (once)")
    _globals(imp, suppress=True)
    imp.add_argument("id", type=int, metavar="ID")
    imp.add_argument("--ticket", required=True, metavar="TID", help="the ticket to add it to")
    imp.add_argument("--as", dest="kind", choices=("reply", "note"), default="reply",
                     help="a client reply (default; sets Customer-Reply) or a private staff note")

    p = command("reprocess", "run a failed import-log entry through the pipeline again")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("imap", "import from IMAP mailboxes: status, sync, test")
    i_sub = p.add_subparsers(dest="imap_command", metavar="ACTION", required=True)
    st = i_sub.add_parser("status", help="per mailbox: connected, last sync, last error, counts")
    _globals(st, suppress=True)
    st.add_argument("--json", action="store_true", help="print JSON")
    sy = i_sub.add_parser("sync", help="import from one mailbox (or all) without the SMTP/LMTP listeners",
                          description="Import from the [[imap]] mailbox NAME (or all). With --once, import what "
                          "is there now, process it, and exit (for tests and cron-style setups); without, keep "
                          "importing until SIGTERM. Exit 77 when the login is refused, 66 for a missing folder, "
                          "75 when the server cannot be reached.")
    _globals(sy, suppress=True)
    sy.add_argument("name", nargs="?", metavar="NAME")
    sy.add_argument("--once", action="store_true", help="import what is there now, process it, then exit")
    sy.add_argument("--json", action="store_true", help="print the summary as JSON (with --once)")
    te = i_sub.add_parser("test", help="log in, list folders, report capabilities")
    _globals(te, suppress=True)
    te.add_argument("name", metavar="NAME")
    te.add_argument("--json", action="store_true", help="print JSON")

    p = command("ban", "the banned senders list: mail from them is blocked (reason banned)")
    b_sub = p.add_subparsers(dest="ban_command", metavar="ACTION", required=True)
    ba = b_sub.add_parser("add", help="ban an address or *@domain")
    _globals(ba, suppress=True)
    ba.add_argument("pattern", metavar="PATTERN", help="user@example.com or *@example.com")
    ba.add_argument("--reason", help="why (shown in the list and in the import log)")
    br = b_sub.add_parser("remove", help="lift a ban")
    _globals(br, suppress=True)
    br.add_argument("pattern", metavar="PATTERN")
    bl = b_sub.add_parser("list", help="the banned addresses and domains")
    _globals(bl, suppress=True)
    bl.add_argument("--json", action="store_true", help="print JSON")

    p = command("clients", "client accounts and their people (owner, authorised users, contacts)")
    c_sub = p.add_subparsers(dest="clients_command", metavar="ACTION", required=True)
    ca = c_sub.add_parser("add", help="add a person to an account (created if new), or a registered user")
    _globals(ca, suppress=True)
    ca.add_argument("email", metavar="EMAIL")
    ca.add_argument("--account", metavar="NAME", help="the client account (company or person)")
    ca.add_argument("--role", choices=("owner", "user", "contact", "registered"), default="owner",
                    help="owner (default), user (authorised user), contact (sub-account), or registered (no account)")
    ca.add_argument("--name", help="the person's name")
    ci = c_sub.add_parser("import", help="add people from a CSV file with columns account,email,name,role")
    _globals(ci, suppress=True)
    ci.add_argument("file", metavar="FILE.csv")
    cl = c_sub.add_parser("list", help="accounts, their people and registered users")
    _globals(cl, suppress=True)
    cl.add_argument("--json", action="store_true", help="print JSON")

    p = command("staff", "staff members (their replies carry the Operator badge)")
    s_sub = p.add_subparsers(dest="staff_command", metavar="ACTION", required=True)
    sa = s_sub.add_parser("add", help="add or update a staff member")
    _globals(sa, suppress=True)
    sa.add_argument("email", metavar="EMAIL")
    sa.add_argument("--name", help="display name")
    sa.add_argument("--username", help="login name (default: the address's local part)")
    sl = s_sub.add_parser("list", help="staff members")
    _globals(sl, suppress=True)
    sl.add_argument("--json", action="store_true", help="print JSON")

    p = command("ticket", "list and show tickets")
    t_sub = p.add_subparsers(dest="ticket_command", metavar="ACTION", required=True)
    lst = t_sub.add_parser("list", help="list tickets, most recent activity first")
    _globals(lst, suppress=True)
    lst.add_argument("--status", metavar="S", help="only this status (Open, Customer-Reply, Closed, ...)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    shw = t_sub.add_parser("show", help="one ticket with its messages")
    _globals(shw, suppress=True)
    shw.add_argument("tid", metavar="TID")
    shw.add_argument("--json", action="store_true", help="print JSON")
    return parser


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

    logs.setup(os.environ.get("TICKETD_LOG_LEVEL") or settings.log_level)
    import sqlite3

    from maild.app import StartupError
    from maild.commands import dispatch

    try:
        return dispatch(args, settings)
    except config.ConfigError as exc:
        print(f"ticketd: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except StartupError as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except (sqlite3.Error, OSError) as exc:
        print(f"ticketd: storage error: {exc} (database {settings.db_path}); check that the state directory"
              " exists, is writable and has free space", file=sys.stderr)
        return EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
