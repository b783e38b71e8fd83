"""Typed settings read from ``ticketd.toml``.

One frozen dataclass per TOML table (``[mail]`` → :class:`MailSettings`, reached as ``settings.mail``);
its field defaults are *the* defaults: the reader takes only the keys a file gives and lets the dataclass
fill in the rest. Each field says, with :func:`setting`, which TOML types it takes and how a value is
checked. Every value is checked at start; a bad one raises :class:`ConfigError` naming the file, the key
and the problem. This module is imported by ``ticketd pipe`` on every delivery, so it imports nothing
heavy (the notification rules' names are imported only when a file overrides a rule).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from maild.jobs.calendar import Calendar
    from maild.pipeline.attachments import AttachmentPolicy
    from maild.store.db import DatabaseURL

DEFAULT_CONFIG = "ticketd.toml"
ENV_CONFIG = "TICKETD_CONFIG"
MB = 1024 * 1024
PRIORITIES = ("Low", "Medium", "High")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A configuration problem, with the file and key it concerns."""

    def __init__(self, file: str | Path, key: str, problem: str) -> None:
        self.file, self.key, self.problem = str(file), key, problem
        where = f"key '{key}': " if key else ""
        super().__init__(f"{file}: {where}{problem}")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class _Reader:
    """Pops typed values out of one TOML table, so that leftovers can be reported as unknown keys."""

    def __init__(self, file: Path, prefix: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(file, prefix, f"expected a table, got {type(table).__name__}")
        self.file, self.prefix, self.table = file, prefix, dict(table)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if name not in self.table:
            return default
        value = self.table.pop(name)
        if isinstance(value, bool) and kind is int:
            raise self.error(name, f"expected an integer, got {value!r}")
        if not isinstance(value, kind):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(name, f"expected {want}, got {type(value).__name__} {value!r}")
        return value

    def sub(self, name: str) -> _Reader:
        return _Reader(self.file, self.key(name), self.table.pop(name, {}))

    def finish(self) -> None:
        for name in self.table:
            raise self.error(name, "unknown setting (check the spelling; see README 'Configuration')")


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_ADDR_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK or host.startswith("127.")


def parse_listen(file: Path, key: str, value: Any) -> Listen | None:
    """``"HOST:PORT"``, or ``""``/``false`` for off."""
    if value is False or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(file, key, f"expected \"HOST:PORT\" or false, got {value!r}")
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(file, key, f"expected \"HOST:PORT\" with a port 0-65535, got {value!r}")
    return Listen(host, int(port))


def parse_size(file: Path, key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        size = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    else:
        raise ConfigError(file, key, f"expected a size such as 26214400 or \"25MB\", got {value!r}")
    if size < 1024:
        raise ConfigError(file, key, f"must be at least 1024 bytes, got {size}")
    return size


# -- the schema ------------------------------------------------------------------------------------------
# A check gets the table's reader, the key's name and the raw TOML value (already of the right type) and
# returns the value to keep, or raises ``reader.error(name, problem)``.

Check = Callable[[_Reader, str, Any], Any]


def setting(default: Any, kind: type | tuple[type, ...], check: Check | None = None, *,
            factory: Callable[[], Any] | None = None) -> Any:
    """A TOML key of a section: its default (the only place it is written), the TOML types it accepts and
    the check its value goes through. A key left out keeps the default as it is, unchecked."""
    meta = {"kind": kind, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _range(lo: int, hi: int, note: str = "") -> Check:
    def check(r: _Reader, name: str, value: int) -> int:
        if not lo <= value <= hi:
            raise r.error(name, f"must be {lo}-{hi}{note}, got {value}")
        return value
    return check


def _choice(*choices: str, lower: bool = False) -> Check:
    def check(r: _Reader, name: str, value: str) -> str:
        if (value.lower() if lower else value) not in choices:
            raise r.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower() if lower else value
    return check


def _size(r: _Reader, name: str, value: int | str) -> int:
    return parse_size(r.file, r.key(name), value)


def _listen(r: _Reader, name: str, value: str | bool) -> Listen | None:
    return parse_listen(r.file, r.key(name), value)


def _path(must_be: str | None) -> Check:
    """A path relative to the config file's folder; ``must_be`` "file" or "dir" requires it to exist."""
    def check(r: _Reader, name: str, value: str) -> Path:
        if not value.strip():
            raise r.error(name, "expected a path, got an empty string (leave the key out instead)")
        # Not resolved: a secret behind a symlink that is swapped on rotation must still be found.
        path = Path(os.path.abspath(r.file.parent / value))
        if must_be == "file" and not path.is_file():
            raise r.error(name, f"no such file: {path}")
        if must_be == "dir" and not path.is_dir():
            raise r.error(name, f"no such directory: {path}")
        return path
    return check


def _nonempty(r: _Reader, name: str, value: str) -> str:
    if not value.strip():
        raise r.error(name, "must not be empty")
    return value


def _database_url(r: _Reader, name: str, value: str) -> str:
    from maild.store.db import parse_url

    try:
        parse_url(value, Path("/"))
    except ValueError as exc:
        raise r.error(name, str(exc)) from None
    return value.strip()


def _domain(r: _Reader, name: str, value: str) -> str:
    if not re.match(r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$", value):
        raise r.error(name, f"expected a domain name such as helpdesk.example, got {value!r}")
    return value.lower()


def _subject_token(r: _Reader, name: str, value: str) -> str:
    if value.count("{tid}") != 1:
        raise r.error(name, f"must contain {{tid}} exactly once, got {value!r}")
    return value


def _authserv_ids(r: _Reader, name: str, value: list[Any]) -> tuple[str, ...]:
    if not all(isinstance(a, str) and re.match(r"^[A-Za-z0-9._-]{1,253}$", a) for a in value):
        raise r.error(name, "expected the host names your MTA writes at the start of its"
                      f" Authentication-Results header, such as \"mx.example.com\", got {value!r}")
    return tuple(a.lower().rstrip(".") for a in value)


def _extensions(r: _Reader, name: str, value: list[Any]) -> tuple[str, ...]:
    if not all(isinstance(e, str) and re.match(r"^[A-Za-z0-9]{1,16}$", e) for e in value):
        raise r.error(name, f"expected extensions without dots such as \"pdf\", got {value!r}")
    return tuple(e.lower() for e in value)


def _networks(r: _Reader, name: str, value: list[Any]) -> tuple[str, ...]:
    import ipaddress

    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise r.error(name, f"{item!r} is not an IP address or network (such as 10.0.0.0/8 or ::1)") from None
    return tuple(out)


def _public_url(r: _Reader, name: str, value: str) -> str:
    from urllib.parse import urlsplit

    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        ok = (parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query
              and not parts.fragment and parts.username is None and not any(c.isspace() for c in url))
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        ok = False
    if not ok:
        raise r.error(name, "expected the address clients reach the helpdesk at, http:// or https:// with a"
                      f" host and no query, such as \"https://help.example.com\", got {value!r}")
    return url


def _host(r: _Reader, name: str, value: str) -> str:
    host = value.strip("[]")
    if not re.match(r"^[A-Za-z0-9._:-]{1,253}$", host):
        raise r.error(name, f"expected a host name or IP address such as \"smtp.example.com\", got {value!r}")
    return host


def _header_text(r: _Reader, name: str, value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > 200:
        raise r.error(name, f"expected one line of text (at most 200 characters), got {value!r}")
    return value.strip()


def _notification_rules(r: _Reader, name: str, value: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """``[notifications.rules]``: event name → list of recipient groups, replacing that event's row."""
    from maild.desk.events import EVENT_NAMES
    from maild.notify.rules import CLIENT_GROUPS, GROUPS, PRIVATE_EVENTS

    table = _Reader(r.file, r.key(name), value)
    result: dict[str, tuple[str, ...]] = {}
    for event, groups in table.table.items():
        if event not in EVENT_NAMES:
            raise table.error(event, f"unknown event; the events are {', '.join(EVENT_NAMES)}")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise table.error(event, f"expected a list of group names such as [\"watchers\", \"requester\"]"
                                     f" ([] for nobody), got {groups!r}")
        for group in groups:
            if group not in GROUPS:
                raise table.error(event, f"unknown group {group!r}; the groups are {', '.join(GROUPS)}")
            if event in PRIVATE_EVENTS and group in CLIENT_GROUPS:
                raise table.error(event, f"{event} is private to staff: it cannot go to the client group {group!r}")
        result[event] = tuple(dict.fromkeys(groups))
    return result


# -- the sections: attribute names are the TOML table and key names ---------------------------------------

@dataclass(frozen=True)
class StorageSettings:
    """``[storage]``; read only to find :attr:`Settings.state_dir` (absolute there)."""

    state_dir: str = setting("./var", str, _nonempty)


@dataclass(frozen=True)
class DatabaseSettings:
    """``[database]``: ``url`` is ``sqlite:///FILE`` (relative to the state directory) or
    ``postgresql://USER@HOST:PORT/DB`` (password from ``?password_file=PATH``, ``PGPASSWORD`` or ``~/.pgpass``)."""

    url: str = setting("sqlite:///ticketd.sqlite3", str, _database_url)
    # Several nodes: how long the work a node took (spool and outbox rows, an IMAP mailbox) stays its own
    # without renewal, i.e. how soon a node that died has its work taken over.
    lease_seconds: int = setting(60, int, _range(2, 3600))
    node: str = setting("", str)   # this node's name among several (default: the host name)


@dataclass(frozen=True)
class MailSettings:
    """``[mail]``"""

    domain: str = setting("helpdesk.example", str, _domain)
    max_message_size: int = setting(25 * MB, (int, str), _size)
    subject_token: str = setting("[Ticket #{tid}]", str, _subject_token)
    ticket_id_digits: int = setting(6, int, _range(4, 12))
    default_priority: str = setting("Medium", str, _choice(*PRIORITIES))
    trusted_authserv_ids: tuple[str, ...] = setting((), list, _authserv_ids)  # MTAs whose A-R header we believe


@dataclass(frozen=True)
class ListenerLimits:
    """What one client may take of an SMTP or LMTP listener; ``[smtp]`` and ``[lmtp]`` share these keys
    and their defaults."""

    backlog: int = setting(4096, int, _range(16, 65535))              # the kernel caps it at somaxconn
    max_connections: int = setting(1000, int, _range(1, 100000))       # sessions at once, then 421
    max_per_client: int = setting(50, int, _range(1, 100000))          # sessions at once per client address
    max_recipients: int = setting(100, int, _range(1, 10000))          # per message, then 452 4.5.3
    max_commands_without_mail: int = setting(100, int, _range(10, 100000))   # then 421 and close
    max_seconds_without_mail: int = setting(600, int, _range(1, 86400, " seconds"))


@dataclass(frozen=True)
class SmtpSettings(ListenerLimits):
    """``[smtp]``; ``listen`` None is off (``serve --smtp`` overrides it)."""

    listen: Listen | None = setting(Listen("127.0.0.1", 2525), (str, bool), _listen)


@dataclass(frozen=True)
class LmtpSettings(ListenerLimits):
    """``[lmtp]``; ``listen`` None is off (``serve --lmtp`` overrides it)."""

    listen: Listen | None = setting(Listen("127.0.0.1", 2424), (str, bool), _listen)


@dataclass(frozen=True)
class WebSettings:
    """``[web]``. ``public_url`` (no trailing slash) is where clients reach the helpdesk: links in their
    mail are built from it."""

    listen: Listen | None = setting(Listen("127.0.0.1", 8025), (str, bool), _listen)
    public_url: str = setting("http://127.0.0.1:8025", str, _public_url)
    # The ticket page's thread: the newest message first (WHMCS's default) or the oldest.
    thread_order: str = setting("newest", str, _choice("newest", "oldest", lower=True))
    # Who may read /metrics without an admin's session: addresses or networks (CIDR).
    metrics_allow: tuple[str, ...] = setting(("127.0.0.1", "::1"), list, _networks)
    # Reverse proxies in front of ticketd: from these, X-Forwarded-For names the client (rate limits,
    # /metrics' allow-list, the access log).
    trusted_proxies: tuple[str, ...] = setting((), list, _networks)
    # How long the link in a client's mail opens their ticket's pages (each mail brings a fresh one).
    client_link_days: int = setting(60, int, _range(1, 3650, " days"))


@dataclass(frozen=True)
class LogSettings:
    """``[log]``; ``$TICKETD_LOG_LEVEL`` overrides ``level`` (:data:`ENV_OVERRIDES`)."""

    level: str = setting("info", str, _choice(*LOG_LEVELS, lower=True))


# The worker's defaults depend on the machine: they are computed here, once, when this module is imported.
_CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerSettings:
    """``[worker]``"""

    batch: int = setting(100, int, _range(1, 10000))
    parsers: int = setting(2 if _CPUS > 1 else 0, int, _range(0, 64))   # 0: parse in a thread
    process: bool = setting(_CPUS > 1, bool)                             # serve: pipeline in its own process


@dataclass(frozen=True)
class AttachmentSettings:
    """``[attachments]``"""

    # What support mail really carries; macro-bearing office files are refused whatever their extension.
    allowed_extensions: tuple[str, ...] = setting(
        ("doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf",
         "png", "jpg", "jpeg", "gif", "webp", "heic", "bmp", "tif", "tiff",
         "pdf", "txt", "log", "csv", "json", "xml", "zip", "7z", "gz", "eml", "msg", "mp4", "mov"), list, _extensions)
    max_file_size: int = setting(10 * MB, (int, str), _size)
    max_total_size: int = setting(25 * MB, (int, str), _size)
    # Where their bytes go: "files" under state_dir/attachments, or "database" (nodes without a shared disk).
    store: str = setting("files", str, _choice("files", "database"))

    @property
    def policy(self) -> AttachmentPolicy:
        from maild.pipeline.attachments import AttachmentPolicy

        return AttachmentPolicy(frozenset(self.allowed_extensions), self.max_file_size, self.max_total_size)


@dataclass(frozen=True)
class LimitSettings:
    """``[limits]``"""

    new_tickets_per_sender: int = setting(30, int, _range(0, 100000, " (0 = off)"))
    window_minutes: int = setting(60, int, _range(1, 10080, " minutes (a week)"))


@dataclass(frozen=True)
class OutboundSettings:
    """``[outbound]``: how automatic mail leaves. ``transport`` "maildir" writes each mail under
    ``state_dir/sent/new`` (:attr:`Settings.sent_dir`); "smtp" hands it to the relay described by the rest."""

    transport: str = setting("maildir", str, _choice("maildir", "smtp"))
    host: str = setting("localhost", str, _host)
    port: int = setting(0, int, _range(0, 65535, " (0 = 25 for starttls or none, 465 for tls)"))
    security: str = setting("starttls", str, _choice("starttls", "tls", "none"))
    ca_file: Path | None = setting(None, str, _path("file"))       # trust these CAs instead of the system's
    tls_verify: bool = setting(True, bool)
    username: str = setting("", str)                                 # "" = no AUTH
    password_file: Path | None = setting(None, str, _path(None))   # required with username
    timeout: int = setting(30, int, _range(1, 600, " seconds"))
    connections: int = setting(2, int, _range(1, 32))
    retry_hours: int = setting(48, int, _range(1, 720, " hours"))  # temporary failures, then failed
    max_backoff_seconds: int = setting(3600, int, _range(10, 86400, " seconds"))
    attach_max: int = setting(10 * MB, (int, str), _size)          # bigger reply attachments go as links
    from_name: str = setting("", str, _header_text)                # "" = the department's name

    @property
    def effective_port(self) -> int:
        """``port``, or the default for ``security`` when it is 0: 465 for tls, else 25."""
        return self.port or (465 if self.security == "tls" else 25)

    def password(self) -> str:
        """The relay password, read from ``password_file`` at each call (so a rotated secret is picked
        up); "" without AUTH."""
        return self.password_file.read_text().strip() if self.password_file is not None else ""


def _check_outbound(r: _Reader, o: OutboundSettings) -> None:
    if o.username and o.password_file is None:
        raise r.error("password_file", "required when username is set: a file holding the relay password")
    if o.password_file is not None and not o.username:
        raise r.error("password_file", "given without username (set username too, or leave it out)")
    if o.security == "none" and o.username and not _is_loopback(o.host):
        raise r.error("security", f"'none' sends the password in clear text; refused for {o.host} "
                                  "(allowed only for a loopback host)")


@dataclass(frozen=True)
class NotificationSettings:
    """``[notifications]``. ``rules`` maps an event name to the recipient groups that replace its row in
    :data:`maild.notify.rules.DEFAULT_RULES`."""

    templates: Path | None = setting(None, str, _path("dir"))      # overrides of templates/email/
    auto_per_hour: int = setting(10, int, _range(0, 10000, " (0 = no cap)"))  # automatic mails per address
    bounce_hold_days: int = setting(30, int, _range(1, 3650, " days"))
    rules: dict[str, tuple[str, ...]] = setting(None, dict, _notification_rules, factory=dict)


def _statuses(r: _Reader, name: str, value: list[Any]) -> tuple[str, ...]:
    from maild.store.tickets import CLOSED, STATUSES

    out = []
    for item in value:
        match = next((s for s in STATUSES if isinstance(item, str) and s.lower() == item.strip().lower()), None)
        if match is None or match == CLOSED:
            raise r.error(name, f"{item!r} is not a status that can be left idle; use some of "
                                f"{', '.join(s for s in STATUSES if s != CLOSED)}")
        if match not in out:
            out.append(match)
    return tuple(out)


@dataclass(frozen=True)
class AutoCloseSettings:
    """``[autoclose]``: tickets in ``statuses`` with no message the client could see for ``hours`` are
    closed (seed: Close Inactive Tickets; by default Answered and Customer-Reply, after 72 hours). 0: off."""

    hours: int = setting(72, int, _range(0, 24 * 3650, " hours (0 = off)"))
    statuses: tuple[str, ...] = setting(("Answered", "Customer-Reply"), list, _statuses)


@dataclass(frozen=True)
class FeedbackSettings:
    """``[feedback]``: a closed ticket's client is asked for feedback once it has stayed closed this long
    (a ticket closed by mistake and reopened at once is not asked), in departments with ``feedback``."""

    delay_minutes: int = setting(30, int, _range(0, 30 * 24 * 60, " minutes"))
    # Clients may rate each staff reply from 1 to 5 on their ticket's page (seed: Support Ticket Ratings).
    reply_ratings: bool = setting(True, bool)


@dataclass(frozen=True)
class HousekeepingSettings:
    """``[housekeeping]``: how long raw mail is kept once processed, and attachment bytes nothing uses."""

    raw_days: int = setting(30, int, _range(0, 36500, " days (0 = keep for ever)"))
    raw_days_kept: int = setting(90, int, _range(0, 36500, " days (0 = keep for ever)"))  # blocked, failed
    orphan_hours: int = setting(24, int, _range(1, 24 * 365, " hours"))


@dataclass(frozen=True)
class JobSettings:
    """``[jobs]``: minutes between two runs of each scheduled job (``ticketd jobs list``)."""

    auto_close: int = setting(10, int, _range(1, 7 * 24 * 60, " minutes"))
    escalate: int = setting(5, int, _range(1, 7 * 24 * 60, " minutes"))
    feedback: int = setting(5, int, _range(1, 7 * 24 * 60, " minutes"))
    housekeeping: int = setting(60, int, _range(1, 7 * 24 * 60, " minutes"))


_CROSS_CHECKS: dict[type, Callable[[_Reader, Any], None]] = {OutboundSettings: _check_outbound}
S = TypeVar("S")


def _section(root: _Reader, name: str, cls: type[S]) -> S:
    """Read table ``name`` into ``cls``: only the keys given are checked and passed; the rest keep the
    dataclass defaults."""
    r = root.sub(name)
    given: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in r.table:
            value = r.get(f.name, f.metadata["kind"], None)
            check = f.metadata["check"]
            given[f.name] = check(r, f.name, value) if check else value
    r.finish()
    section = cls(**given)
    if (cross := _CROSS_CHECKS.get(cls)) is not None:
        cross(r, section)
    return section


def section(cls: type) -> Any:
    """A field of :class:`Settings` holding one TOML table (the field's name is the table's)."""
    return field(default_factory=cls, metadata={"section": True})


# -- departments, mailboxes, the whole ---------------------------------------------------------------------

@dataclass(frozen=True)
class Department:
    name: str
    addresses: tuple[str, ...]
    accept_new: str = "anyone"         # anyone | registered (others: blocked:unregistered)
    closed_replies: str = "reopen"     # reopen | new_ticket | block (blocked:closed_ticket)
    calendar: str = ""                 # a [[calendars]] name: its rules count business time; "": wall time
    feedback: bool = True              # ask the client for feedback once a ticket has closed (seed: on)
    first_response: tuple[tuple[str, int], ...] = ()   # (priority, minutes): response targets, business time
    resolution: tuple[tuple[str, int], ...] = ()

    def target(self, kind: str, priority: str) -> int | None:
        """The ``first_response`` or ``resolution`` target in minutes for ``priority``, if any."""
        return dict(getattr(self, kind)).get(priority)


ESCALATION_CLOCKS = {"reply": "last_reply_at", "client_reply": "last_client_reply_at",
                     "staff_reply": "last_staff_reply_at", "opened": "created_at"}


@dataclass(frozen=True)
class Escalation:
    """One ``[[escalations]]`` rule: when its conditions hold for a ticket, its actions are taken once, and
    again only after a person changed the ticket (a reply, an option change)."""

    name: str
    minutes: int                               # since ``after``, in business time where the department has a calendar
    after: str = "reply"                       # reply | client_reply | staff_reply | opened
    departments: tuple[str, ...] = ()          # (): all
    statuses: tuple[str, ...] = ()             # (): every status but Closed
    priorities: tuple[str, ...] = ()           # (): all
    flagged: bool | None = None                # None: either
    assigned: bool | None = None
    breached: str = ""                         # "" | first_response | resolution: the department's target passed
    # actions
    department: str = ""
    priority: str = ""
    status: str = ""
    assign: str = ""                           # a username
    flag: str = ""
    notify: tuple[str, ...] = ()               # usernames named in the escalated mail's recipients
    reply: str = ""                            # a predefined reply to the client
    note: str = ""                             # a private note

    @property
    def column(self) -> str:
        return ESCALATION_CLOCKS[self.after]


@dataclass(frozen=True)
class ImapAccount:
    """One mailbox to import from (``[[imap]]``)."""

    name: str
    host: str
    port: int
    security: str                  # tls | starttls | none
    username: str
    password: str | None
    password_file: Path | None
    folders: tuple[str, ...]
    department: str
    after_import: str              # seen | move:FOLDER | delete
    poll_seconds: int
    batch: int
    idle: bool
    timeout: int

    @property
    def move_to(self) -> str | None:
        return self.after_import[5:] if self.after_import.startswith("move:") else None

    def secret(self) -> str:
        """The password, read from ``password_file`` each time (so a rotated secret is picked up)."""
        if self.password is not None:
            return self.password
        assert self.password_file is not None
        return self.password_file.read_text().strip()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "host": self.host, "port": self.port, "security": self.security,
            "username": self.username, "password": "***" if self.password is not None else None,
            "password_file": str(self.password_file) if self.password_file else None,
            "folders": list(self.folders), "department": self.department, "after_import": self.after_import,
            "poll_seconds": self.poll_seconds, "batch": self.batch, "idle": self.idle, "timeout": self.timeout,
        }


def _plain(value: Any) -> Any:
    """A setting as JSON: paths and listen addresses as strings, tuples as lists."""
    if isinstance(value, Listen | Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Settings:
    """The effective configuration. Paths are absolute. Each section field is one TOML table."""

    source: Path
    state_dir: Path
    departments: tuple[Department, ...]
    imap: tuple[ImapAccount, ...] = ()
    calendars: dict[str, Calendar] = field(default_factory=dict)
    escalations: tuple[Escalation, ...] = ()
    database: DatabaseSettings = section(DatabaseSettings)
    mail: MailSettings = section(MailSettings)
    smtp: SmtpSettings = section(SmtpSettings)
    lmtp: LmtpSettings = section(LmtpSettings)
    web: WebSettings = section(WebSettings)
    log: LogSettings = section(LogSettings)
    worker: WorkerSettings = section(WorkerSettings)
    attachments: AttachmentSettings = section(AttachmentSettings)
    limits: LimitSettings = section(LimitSettings)
    outbound: OutboundSettings = section(OutboundSettings)
    notifications: NotificationSettings = section(NotificationSettings)
    autoclose: AutoCloseSettings = section(AutoCloseSettings)
    feedback: FeedbackSettings = section(FeedbackSettings)
    housekeeping: HousekeepingSettings = section(HousekeepingSettings)
    jobs: JobSettings = section(JobSettings)

    @cached_property
    def database_url(self) -> DatabaseURL:
        """Where the database is (a relative SQLite file is in the state directory)."""
        from maild.store.db import parse_url

        return parse_url(self.database.url, self.state_dir)

    @property
    def attachments_dir(self) -> Path:
        return self.state_dir / "attachments"

    @property
    def sent_dir(self) -> Path:
        """The maildir that ``outbound.transport = "maildir"`` delivers into (``new/`` below it)."""
        return self.state_dir / "sent"

    @property
    def secret_path(self) -> Path:
        return self.state_dir / "secret.key"

    def with_state_dir(self, state_dir: str | Path) -> Settings:
        return replace(self, state_dir=Path(state_dir).resolve())

    def department(self, name: str) -> Department | None:
        for dept in self.departments:
            if dept.name.lower() == name.lower():
                return dept
        return None

    def as_dict(self) -> dict[str, Any]:
        """The effective settings as JSON: sizes in bytes, absolute paths; never a password."""
        out: dict[str, Any] = {
            "config_file": str(self.source),
            "state_dir": str(self.state_dir),
            "database": self.database_url.display,
        }
        for f in fields(self):
            if f.metadata.get("section"):
                table = getattr(self, f.name)
                out[f.name] = {k.name: _plain(getattr(table, k.name)) for k in fields(table)}
        out["outbound"]["port"] = self.outbound.effective_port
        out["database"]["url"] = self.database_url.display  # never the password a URL may carry
        out["departments"] = [{"name": d.name, "addresses": list(d.addresses), "accept_new": d.accept_new,
                               "closed_replies": d.closed_replies, "calendar": d.calendar, "feedback": d.feedback,
                               "first_response_minutes": dict(d.first_response),
                               "resolution_minutes": dict(d.resolution)} for d in self.departments]
        out["calendars"] = [{"name": c.name, "timezone": c.timezone, "holidays": sorted(str(h) for h in c.holidays),
                             "week": c.week_text()} for c in self.calendars.values()]
        out["escalations"] = [_plain({f.name: getattr(e, f.name) for f in fields(e)}) for e in self.escalations]
        out["imap"] = [a.as_dict() for a in self.imap]
        return out


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in fields(cls) if f.name == name)


def _calendars(file: Path, value: Any) -> dict[str, Calendar]:
    from maild.jobs.calendar import Calendar, CalendarError

    if not isinstance(value, list):
        raise ConfigError(file, "calendars", "expected [[calendars]] tables (an array of tables)")
    found: dict[str, Calendar] = {}
    for i, table in enumerate(value):
        r = _Reader(file, f"calendars[{i}]", table)
        name = r.get("name", str, "")
        if not name.strip() or name in found:
            raise r.error("name", f"each calendar needs a name of its own, got {name!r}")
        timezone = r.get("timezone", str, "UTC")
        week = r.get("week", dict, None)
        holidays = r.get("holidays", list, [])
        try:
            found[name] = Calendar.build(name, timezone, week, holidays)
        except CalendarError as exc:
            key = ("timezone" if "time zone" in str(exc) else "holidays" if "holiday" in str(exc) else "week")
            raise r.error(key, str(exc)) from None
        r.finish()
    return found


def _names(r: _Reader, key: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """A list of names from ``allowed`` (case-insensitive), spelled as there."""
    value = r.get(key, list, [])
    out = []
    for item in value:
        match = next((a for a in allowed if isinstance(item, str) and a.lower() == item.strip().lower()), None)
        if match is None:
            raise r.error(key, f"{item!r} is not a {what}; use some of {', '.join(allowed)}")
        out.append(match)
    return tuple(out)


def _escalations(file: Path, value: Any, departments: tuple[Department, ...]) -> tuple[Escalation, ...]:
    from maild.store.tickets import CLOSED, STATUSES

    if not isinstance(value, list):
        raise ConfigError(file, "escalations", "expected [[escalations]] tables (an array of tables)")
    rules: list[Escalation] = []
    names = [d.name for d in departments]
    for i, table in enumerate(value):
        r = _Reader(file, f"escalations[{i}]", table)
        name = r.get("name", str, "")
        if not re.match(r"^[\w .:-]{1,64}$", name) or any(x.name == name for x in rules):
            raise r.error("name", f"each rule needs a short name of its own, got {name!r}")
        breached = r.get("breached", str, "")
        if breached not in ("", "first_response", "resolution"):
            raise r.error("breached", f"must be first_response or resolution, got {breached!r}")
        minutes = r.get("minutes", int, 0 if breached else None)
        if minutes is None or not (0 if breached else 1) <= minutes <= 525600:
            raise r.error("minutes", f"required (unless the rule is about a breached target): 1-525600 minutes,"
                                     f" got {minutes!r}")
        after = r.get("after", str, "reply")
        if after not in ESCALATION_CLOCKS:
            raise r.error("after", f"must be one of {', '.join(ESCALATION_CLOCKS)}, got {after!r}")
        flagged, assigned = r.get("flagged", bool, None), r.get("assigned", bool, None)
        rule = Escalation(
            name=name, minutes=minutes, after=after, departments=_names(r, "departments", names, "department"),
            statuses=_names(r, "statuses", [s for s in STATUSES if s != CLOSED], "status a rule can watch"),
            priorities=_names(r, "priorities", PRIORITIES, "priority"), flagged=flagged, assigned=assigned,
            breached=breached,
            department=_one(r, "department", names, "department"),
            priority=_one(r, "priority", PRIORITIES, "priority"),
            status=_one(r, "status", STATUSES, "status"),
            assign=r.get("assign", str, ""), flag=r.get("flag", str, ""),
            notify=tuple(r.get("notify", list, [])), reply=r.get("reply", str, ""), note=r.get("note", str, ""))
        if not any((rule.department, rule.priority, rule.status, rule.assign, rule.flag, rule.notify, rule.reply,
                    rule.note)):
            raise r.error("name", f"rule {name!r} does nothing: give an action (department, priority, status,"
                                  " assign, flag, notify, reply or note)")
        if not all(isinstance(u, str) and u.strip() for u in rule.notify):
            raise r.error("notify", "expected a list of staff usernames")
        r.finish()
        rules.append(rule)
    return tuple(rules)


def _targets(r: _Reader, key: str) -> tuple[tuple[str, int], ...]:
    """A response target: minutes for every priority, or a table of priority → minutes."""
    value = r.get(key, (int, dict), None)
    if value is None:
        return ()
    given = {p: value for p in PRIORITIES} if isinstance(value, int) else value
    out = []
    for prio, minutes in given.items():
        match = next((p for p in PRIORITIES if p.lower() == str(prio).lower()), None)
        if match is None:
            raise r.error(key, f"{prio!r} is not a priority; use {', '.join(PRIORITIES)}")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 525600:
            raise r.error(key, f"{match}: expected 1-525600 minutes, got {minutes!r}")
        out.append((match, minutes))
    return tuple(out)


def _one(r: _Reader, key: str, allowed: Sequence[str], what: str) -> str:
    value = r.get(key, str, "")
    if not value:
        return ""
    match = next((a for a in allowed if a.lower() == value.strip().lower()), None)
    if match is None:
        raise r.error(key, f"{value!r} is not a {what}; use one of {', '.join(allowed)}")
    return match


def _departments(file: Path, value: Any, calendars: Mapping[str, Any] | None = None) -> tuple[Department, ...]:
    calendars = calendars or {}
    if not isinstance(value, list) or not value:
        raise ConfigError(file, "departments", "at least one [[departments]] table is required")
    seen_names: set[str] = set()
    seen_addrs: dict[str, str] = {}
    result = []
    for i, table in enumerate(value):
        r = _Reader(file, f"departments[{i}]", table)
        name = r.get("name", str, None)
        if not name or not name.strip():
            raise r.error("name", "a department needs a non-empty name")
        if name.lower() in seen_names:
            raise r.error("name", f"department {name!r} is defined twice")
        seen_names.add(name.lower())
        addrs = r.get("addresses", list, None)
        if addrs is None:
            one = r.get("address", str, None)
            addrs = [one] if one else []
        if not addrs:
            raise r.error("addresses", f"department {name!r} needs at least one address")
        clean = []
        for addr in addrs:
            if not isinstance(addr, str) or not _ADDR_RE.match(addr) or "+" in addr.split("@")[0]:
                raise r.error("addresses", f"{addr!r} is not a plain address like support@example.com")
            low = addr.lower()
            if low in seen_addrs:
                raise r.error("addresses", f"{addr} is already used by department {seen_addrs[low]!r}")
            seen_addrs[low] = name
            clean.append(low)
        accept = r.get("accept_new", str, _default(Department, "accept_new"))
        if accept not in ("anyone", "registered"):
            raise r.error("accept_new", f"must be \"anyone\" or \"registered\", got {accept!r}")
        closed = r.get("closed_replies", str, _default(Department, "closed_replies"))
        if closed not in ("reopen", "new_ticket", "block"):
            raise r.error("closed_replies", f"must be \"reopen\", \"new_ticket\" or \"block\", got {closed!r}")
        calendar = r.get("calendar", str, "")
        if calendar and calendar not in calendars:
            raise r.error("calendar", f"no [[calendars]] table named {calendar!r}"
                                      f" ({', '.join(calendars) or 'none is defined'})")
        feedback = r.get("feedback", bool, True)
        targets = [_targets(r, key) for key in ("first_response_minutes", "resolution_minutes")]
        r.finish()
        result.append(Department(name.strip(), tuple(clean), accept, closed, calendar, feedback, *targets))
    return tuple(result)


def _imap_accounts(file: Path, value: Any, departments: tuple[Department, ...]) -> tuple[ImapAccount, ...]:
    if not isinstance(value, list):
        raise ConfigError(file, "imap", "expected [[imap]] tables (an array of tables)")
    accounts: list[ImapAccount] = []
    for i, table in enumerate(value):
        r = _Reader(file, f"imap[{i}]", table)
        name = r.get("name", str, "")
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
            raise r.error("name", f"needs a short name of letters, digits, '.', '_' or '-', got {name!r}")
        if any(a.name == name for a in accounts):
            raise r.error("name", f"mailbox name {name!r} is used twice")
        host = r.get("host", str, "")
        if not host:
            raise r.error("host", "the IMAP server's host name is required")
        security = r.get("security", str, "tls")
        if security not in ("tls", "starttls", "none"):
            raise r.error("security", f"must be tls, starttls or none, got {security!r}")
        if security == "none" and not _is_loopback(host):
            raise r.error("security", f"'none' sends the password in clear text; refused for {host} "
                                      "(allowed only for a loopback host)")
        port = r.get("port", int, 993 if security == "tls" else 143)
        if not 1 <= port <= 65535:
            raise r.error("port", f"must be 1-65535, got {port}")
        username = r.get("username", str, "")
        if not username:
            raise r.error("username", "required")
        password = r.get("password", str, None)
        pw_file = r.get("password_file", str, None)
        if (password is None) == (pw_file is None):
            raise r.error("password_file", "give exactly one of password or password_file")
        pw_path = (file.parent / pw_file) if pw_file else None
        folders = r.get("folders", list, ["INBOX"])
        if not folders or not all(isinstance(f, str) and f for f in folders):
            raise r.error("folders", f"expected a list of folder names, got {folders!r}")
        dept = r.get("department", str, departments[0].name)
        match = next((d for d in departments if d.name.lower() == dept.lower()), None)
        if match is None:
            names = ", ".join(d.name for d in departments)
            raise r.error("department", f"{dept!r} is not a configured department ({names})")
        after = r.get("after_import", str, "seen")
        if after not in ("seen", "delete") and not (after.startswith("move:") and len(after) > 5):
            raise r.error("after_import", f"must be \"seen\", \"move:FOLDER\" or \"delete\", got {after!r}")
        if after.startswith("move:") and after[5:] in folders:
            raise r.error("after_import", f"cannot move to {after[5:]!r}, a folder it imports from (the mail"
                                          " would come back with a new UID at every sync)")
        poll = r.get("poll_seconds", int, 60)
        if not 1 <= poll <= 86400:
            raise r.error("poll_seconds", f"must be 1-86400, got {poll}")
        batch = r.get("batch", int, 100)
        if not 1 <= batch <= 1000:
            raise r.error("batch", f"must be 1-1000, got {batch}")
        idle = r.get("idle", bool, True)
        timeout = r.get("timeout", int, 60)
        if not 5 <= timeout <= 3600:
            raise r.error("timeout", f"must be 5-3600 seconds, got {timeout}")
        r.finish()
        accounts.append(ImapAccount(
            name=name, host=host, port=port, security=security, username=username, password=password,
            password_file=pw_path, folders=tuple(folders), department=match.name, after_import=after,
            poll_seconds=poll, batch=batch, idle=idle, timeout=timeout,
        ))
    return tuple(accounts)


# Environment variables that override a key of the file: checked like the key, and a bad value is a
# ConfigError that names the variable.
ENV_OVERRIDES = {"TICKETD_LOG_LEVEL": ("log", "level"), "TICKETD_DATABASE_URL": ("database", "url")}


def load(path: str | Path | None = None, state_dir: str | Path | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check the configuration, then the environment's overrides (:data:`ENV_OVERRIDES`);
    ``path`` defaults to ``$TICKETD_CONFIG`` or ``./ticketd.toml``."""
    env = os.environ if environ is None else environ
    file = Path(path or env.get(ENV_CONFIG) or DEFAULT_CONFIG)
    try:
        with open(file, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        origin = (f"${ENV_CONFIG} names it" if not path and env.get(ENV_CONFIG)
                  else f"use --config PATH or set ${ENV_CONFIG}")
        raise ConfigError(file, "", f"file not found ({origin})") from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "", f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    return with_environment(from_dict(file.resolve(), data, state_dir), env)


def with_environment(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """``settings`` with the overrides of :data:`ENV_OVERRIDES` that ``environ`` sets (an empty variable
    counts as unset), each checked as the key it overrides would be."""
    for var, (table, key) in ENV_OVERRIDES.items():
        value = environ.get(var)
        if not value:
            continue
        current = getattr(settings, table)
        spec = next(f for f in fields(current) if f.name == key)
        r = _Reader(Path(f"${var} (environment)"), table, {key: value})
        checked = r.get(key, spec.metadata["kind"], None)
        if spec.metadata["check"] is not None:
            checked = spec.metadata["check"](r, key, checked)
        settings = replace(settings, **{table: replace(current, **{key: checked})})
    return settings


def from_dict(file: Path, data: dict[str, Any], state_dir: str | Path | None = None) -> Settings:
    """Check ``data`` (a parsed TOML file at ``file``, against whose folder relative paths are taken);
    ``state_dir`` overrides ``storage.state_dir``."""
    root = _Reader(file, "", data)
    storage = _section(root, "storage", StorageSettings)
    state = Path(state_dir) if state_dir is not None else file.parent / storage.state_dir
    sections: dict[str, Any] = {f.name: _section(root, f.name, f.default_factory)  # type: ignore[arg-type]
                for f in fields(Settings) if f.metadata.get("section")}
    if sections["attachments"].store == "database" and sections["database"].url.startswith("sqlite:"):
        raise ConfigError(file, "attachments.store", '"database" is for several nodes on PostgreSQL ([database] url);'
                          ' with SQLite keep "files" (the bytes beside the database, written outside its lock)')
    calendars = _calendars(file, root.table.pop("calendars", []))
    departments = _departments(file, root.table.pop("departments", None), calendars)
    imap = _imap_accounts(file, root.table.pop("imap", []), departments)
    escalations = _escalations(file, root.table.pop("escalations", []), departments)
    root.finish()
    return Settings(source=file, state_dir=state.resolve(), departments=departments, imap=imap,
                    calendars=calendars, escalations=escalations, **sections)
