"""``ticketd pipe``: one message on stdin, committed to the spool, for an MTA pipe or alias.

Exit codes follow sysexits(3), which MTAs understand: 0 only once the message is committed; 75
(EX_TEMPFAIL) when it cannot be stored, so the MTA keeps it and retries; 65 (EX_DATAERR) when it is over
``mail.max_message_size``, so the MTA returns it to the sender with our reason. Malformed mail is never a
reason to fail: it is stored and the pipeline logs what is wrong with it. Only the config, the spool and
the engine's synchronous driver (sqlite3, or psycopg2 for PostgreSQL; no event loop) are imported here, so
a delivery costs milliseconds; a PostgreSQL server that does not answer within ``TICKETD_DB_CONNECT_TIMEOUT`` seconds
(default 5) is an exit 75.
"""

from __future__ import annotations

import argparse
import os
import sys

from maild.config import Settings

EX_OK, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL = 0, 65, 66, 75


def _err(text: str) -> None:
    print(f"ticketd pipe: {text}", file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from maild.spool import Incoming, SpoolError
    from maild.store.db import StorageError, connect_sync
    from maild.store.inbound import spool_sync

    if args.department and settings.department(args.department) is None:
        names = ", ".join(d.name for d in settings.departments)
        _err(f"no department {args.department!r}; configured in {settings.source}: {names}")
        return EX_NOINPUT  # as for every command; the MTA bounces it (only 75 is retried)
    limit = settings.mail.max_message_size
    try:
        raw = sys.stdin.buffer.read(limit + 1)
    except OSError as exc:
        _err(f"cannot read the message from stdin: {exc}; try again")
        return EX_TEMPFAIL
    if len(raw) > limit:
        _err(f"552 5.3.4 message too big: more than {limit} bytes (mail.max_message_size)")
        return EX_DATAERR
    sender = args.sender if args.sender is not None else os.environ.get("SENDER")
    recipients = args.recipient or [
        r for r in (os.environ.get("ORIGINAL_RECIPIENT") or os.environ.get("RECIPIENT"),) if r
    ]
    found = settings.department(args.department) if args.department else None
    dept = found.name if found else None
    item = Incoming(raw=raw, source="pipe", envelope_from=sender, envelope_to=recipients,
                    department_hint=dept)
    try:
        conn = connect_sync(settings.database_url)
    except (StorageError, OSError, RuntimeError) as exc:
        _err(f"cannot open the spool {settings.database_url.display}: {exc}; the MTA should retry (exit 75)")
        return EX_TEMPFAIL
    try:
        queue_id = spool_sync(conn, item)
    except SpoolError as exc:
        _err(f"cannot store the message in {settings.database_url.display}: {exc}; the MTA should retry (exit 75)")
        return EX_TEMPFAIL
    except Exception as exc:  # never exit 1 (a permanent failure to the MTA) for a message not stored
        _err(f"unexpected error storing the message: {type(exc).__name__}: {exc}; the MTA should retry (exit 75)")
        return EX_TEMPFAIL
    finally:
        conn.close()
    if os.environ.get("TICKETD_PIPE_VERBOSE"):
        _err(f"queued as {queue_id}")
    return EX_OK
