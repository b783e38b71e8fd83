"""Staff working a ticket by mail: the commands at the top of a staff member's reply.

Commands are read only from the first non-empty lines of the *new* text (quotes already stripped), one
per line, and stop at the first line that is not a command: nothing in quoted history, a forwarded mail
or a signature can act. ``#note`` makes the rest a private note. A mail of commands alone changes the
ticket and sends nothing to the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from maild.store import tickets

COMMAND = re.compile(r"^#([a-z]+)\b[ \t]*(.*)$", re.IGNORECASE)
PRIORITIES = ("low", "medium", "high")
KNOWN = ("note", "close", "hold", "priority", "assign", "status")


@dataclass
class StaffMail:
    note: bool = False
    status: str | None = None
    priority: str | None = None
    assign: str | None = None
    body: str = ""                          # the text after the commands
    commands: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changes_options(self) -> bool:
        return any(v is not None for v in (self.status, self.priority, self.assign))


def read(text: str) -> StaffMail:
    """Split a staff reply into its leading commands and the text after them."""
    out = StaffMail()
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    while i < len(lines):
        line = lines[i].strip()
        m = COMMAND.match(line)
        if not m:
            break
        i += 1
        name, arg = m.group(1).lower(), m.group(2).strip()
        out.commands.append(line)
        _apply(out, name, arg)
    rest = lines[i:]
    # The staff member's own mail signature goes: ticketd adds their ticket signature to the reply.
    cut = next((n for n, line in enumerate(rest) if line.rstrip() in ("--", "-- ")), len(rest))
    out.body = "\n".join(rest[:cut]).strip("\n")
    return out


def _apply(out: StaffMail, name: str, arg: str) -> None:
    if name == "note":
        out.note = True
    elif name == "close":
        _status(out, tickets.CLOSED, f"#close {arg}".strip(), arg)
    elif name == "hold":
        _status(out, tickets.ON_HOLD, f"#hold {arg}".strip(), arg)
    elif name == "status":
        match = next((s for s in tickets.STATUSES if s.lower() == arg.lower()
                      or s.lower().replace("-", " ") == arg.lower()), None)
        if match is None:
            out.errors.append(f"#status {arg}: unknown status; use one of {', '.join(tickets.STATUSES)}")
        else:
            _status(out, match, f"#status {arg}", "")
    elif name == "priority":
        if arg.lower() not in PRIORITIES:
            out.errors.append(f"#priority {arg}: use low, medium or high")
        else:
            out.priority = arg.capitalize()
    elif name == "assign":
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", arg.lstrip("@")):
            out.errors.append(f"#assign {arg}: give a staff username, e.g. #assign alice")
        else:
            out.assign = arg.lstrip("@")
    else:
        out.errors.append(f"#{name}: unknown command; known: {', '.join('#' + k for k in KNOWN)}")


def _status(out: StaffMail, status: str, said: str, extra: str) -> None:
    if extra:
        out.errors.append(f"{said}: takes no argument")
    elif out.status is not None and out.status != status:
        out.errors.append(f"{said}: contradicts an earlier status command ({out.status})")
    else:
        out.status = status
