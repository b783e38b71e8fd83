"""Typed settings read from ``ticketd.toml``.

Every value is checked at start; a bad one raises :class:`ConfigError` naming the file, the key and
the problem. This module is imported by ``ticketd pipe`` on every delivery, so it imports nothing heavy.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "ticketd.toml"
ENV_CONFIG = "TICKETD_CONFIG"


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


@dataclass(frozen=True)
class Department:
    name: str
    addresses: tuple[str, ...]
    accept_new: str = "anyone"         # anyone | registered (others: blocked:unregistered)
    closed_replies: str = "reopen"     # reopen | new_ticket | block (blocked:closed_ticket)


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


@dataclass(frozen=True)
class Settings:
    """The effective configuration. Paths are absolute."""

    source: Path
    state_dir: Path
    domain: str
    departments: tuple[Department, ...]
    smtp: Listen | None = Listen("127.0.0.1", 2525)
    lmtp: Listen | None = Listen("127.0.0.1", 2424)
    web: Listen | None = Listen("127.0.0.1", 8025)
    max_message_size: int = 25 * 1024 * 1024
    subject_token: str = "[Ticket #{tid}]"
    ticket_id_digits: int = 6
    default_priority: str = "Medium"
    log_level: str = "info"
    worker_batch: int = 100
    worker_parsers: int = 0
    worker_process: bool = False
    imap: tuple[ImapAccount, ...] = ()
    allowed_extensions: tuple[str, ...] = ("png", "jpg", "jpeg", "gif", "pdf", "txt", "log", "csv", "zip", "eml")
    max_attachment_size: int = 10 * 1024 * 1024
    max_attachments_total: int = 25 * 1024 * 1024
    rate_limit: int = 30                  # new tickets per sender per window; 0 turns the limit off
    rate_window_minutes: int = 60
    trusted_authserv_ids: tuple[str, ...] = ()   # MTAs whose Authentication-Results header we believe

    @property
    def db_path(self) -> Path:
        return self.state_dir / "ticketd.sqlite3"

    @property
    def attachments_dir(self) -> Path:
        return self.state_dir / "attachments"

    @property
    def attachment_policy(self) -> Any:
        from maild.pipeline.attachments import AttachmentPolicy

        return AttachmentPolicy(frozenset(self.allowed_extensions), self.max_attachment_size,
                                self.max_attachments_total)

    def with_state_dir(self, state_dir: str | Path) -> Settings:
        return replace(self, state_dir=Path(state_dir).resolve())

    def department(self, name: str) -> Department | None:
        for dept in self.departments:
            if dept.name.lower() == name.lower():
                return dept
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "config_file": str(self.source),
            "state_dir": str(self.state_dir),
            "database": str(self.db_path),
            "mail": {
                "domain": self.domain,
                "max_message_size": self.max_message_size,
                "subject_token": self.subject_token,
                "ticket_id_digits": self.ticket_id_digits,
                "default_priority": self.default_priority,
                "trusted_authserv_ids": list(self.trusted_authserv_ids),
            },
            "smtp": str(self.smtp) if self.smtp else None,
            "lmtp": str(self.lmtp) if self.lmtp else None,
            "web": str(self.web) if self.web else None,
            "log_level": self.log_level,
            "attachments": {"allowed_extensions": list(self.allowed_extensions),
                            "max_file_size": self.max_attachment_size, "max_total_size": self.max_attachments_total},
            "limits": {"new_tickets_per_sender": self.rate_limit, "window_minutes": self.rate_window_minutes},
            "worker": {"batch": self.worker_batch, "parsers": self.worker_parsers,
                       "process": self.worker_process},
            "departments": [{"name": d.name, "addresses": list(d.addresses), "accept_new": d.accept_new,
                             "closed_replies": d.closed_replies} for d in self.departments],
            "imap": [a.as_dict() for a in self.imap],
        }


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_ADDR_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PRIORITIES = ("Low", "Medium", "High")
LOG_LEVELS = ("debug", "info", "warning", "error")


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


def _departments(file: Path, value: Any) -> tuple[Department, ...]:
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
        accept = r.get("accept_new", str, "anyone")
        if accept not in ("anyone", "registered"):
            raise r.error("accept_new", f"must be \"anyone\" or \"registered\", got {accept!r}")
        closed = r.get("closed_replies", str, "reopen")
        if closed not in ("reopen", "new_ticket", "block"):
            raise r.error("closed_replies", f"must be \"reopen\", \"new_ticket\" or \"block\", got {closed!r}")
        r.finish()
        result.append(Department(name.strip(), tuple(clean), accept, closed))
    return tuple(result)


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


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
        if security == "none" and host not in _LOOPBACK and not host.startswith("127."):
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


def load(path: str | Path | None = None, state_dir: str | Path | None = None) -> Settings:
    """Read and check the configuration; ``path`` defaults to ``$TICKETD_CONFIG`` or ``./ticketd.toml``."""
    file = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)
    try:
        with open(file, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found (use --config PATH or set $TICKETD_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "", f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    return from_dict(file.resolve(), data, state_dir)


def from_dict(file: Path, data: dict[str, Any], state_dir: str | Path | None = None) -> Settings:
    root = _Reader(file, "", data)
    storage = root.sub("storage")
    raw_state = storage.get("state_dir", str, "./var")
    storage.finish()
    base = file.parent
    state = Path(state_dir) if state_dir is not None else base / raw_state
    mail = root.sub("mail")
    domain = mail.get("domain", str, "helpdesk.example")
    if not re.match(r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$", domain):
        raise mail.error("domain", f"expected a domain name such as helpdesk.example, got {domain!r}")
    size = parse_size(file, "mail.max_message_size", mail.get("max_message_size", (int, str), 25 * 1024**2))
    token = mail.get("subject_token", str, "[Ticket #{tid}]")
    if token.count("{tid}") != 1:
        raise mail.error("subject_token", f"must contain {{tid}} exactly once, got {token!r}")
    digits = mail.get("ticket_id_digits", int, 6)
    if not 4 <= digits <= 12:
        raise mail.error("ticket_id_digits", f"must be between 4 and 12, got {digits}")
    priority = mail.get("default_priority", str, "Medium")
    if priority not in PRIORITIES:
        raise mail.error("default_priority", f"must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    authserv = mail.get("trusted_authserv_ids", list, [])
    if not all(isinstance(a, str) and re.match(r"^[A-Za-z0-9._-]{1,253}$", a) for a in authserv):
        raise mail.error("trusted_authserv_ids", "expected the host names your MTA writes at the start of"
                         f" its Authentication-Results header, such as \"mx.example.com\", got {authserv!r}")
    mail.finish()
    listens = {}
    for name, default in (("smtp", "127.0.0.1:2525"), ("lmtp", "127.0.0.1:2424"), ("web", "127.0.0.1:8025")):
        table = root.sub(name)
        listens[name] = parse_listen(file, f"{name}.listen", table.get("listen", (str, bool), default))
        table.finish()
    log = root.sub("log")
    level = log.get("level", str, "info").lower()
    if level not in LOG_LEVELS:
        raise log.error("level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    log.finish()
    worker = root.sub("worker")
    batch = worker.get("batch", int, 100)
    if not 1 <= batch <= 10000:
        raise worker.error("batch", f"must be between 1 and 10000, got {batch}")
    att = root.sub("attachments")
    allowed = att.get("allowed_extensions", list, list(Settings.allowed_extensions))
    if not all(isinstance(e, str) and re.match(r"^[A-Za-z0-9]{1,16}$", e) for e in allowed):
        raise att.error("allowed_extensions", f"expected extensions without dots such as \"pdf\", got {allowed!r}")
    max_file = parse_size(file, "attachments.max_file_size", att.get("max_file_size", (int, str), "10MB"))
    max_total = parse_size(file, "attachments.max_total_size", att.get("max_total_size", (int, str), "25MB"))
    att.finish()
    limits = root.sub("limits")
    rate_limit = limits.get("new_tickets_per_sender", int, 30)
    if not 0 <= rate_limit <= 100000:
        raise limits.error("new_tickets_per_sender", f"must be 0 (off) to 100000, got {rate_limit}")
    rate_window = limits.get("window_minutes", int, 60)
    if not 1 <= rate_window <= 10080:
        raise limits.error("window_minutes", f"must be 1-10080 (a week), got {rate_window}")
    limits.finish()
    cpus = os.cpu_count() or 1
    parsers = worker.get("parsers", int, min(2, cpus) if cpus > 1 else 0)
    if not 0 <= parsers <= 64:
        raise worker.error("parsers", f"must be between 0 and 64, got {parsers}")
    process = worker.get("process", bool, cpus > 1)
    worker.finish()
    departments = _departments(file, root.table.pop("departments", None))
    imap = _imap_accounts(file, root.table.pop("imap", []), departments)
    root.finish()
    return Settings(
        source=file,
        state_dir=state.resolve(),
        domain=domain.lower(),
        departments=departments,
        smtp=listens["smtp"],
        lmtp=listens["lmtp"],
        web=listens["web"],
        max_message_size=size,
        subject_token=token,
        ticket_id_digits=digits,
        default_priority=priority,
        log_level=level,
        worker_batch=batch,
        worker_parsers=parsers,
        worker_process=process,
        imap=imap,
        rate_limit=rate_limit,
        allowed_extensions=tuple(e.lower() for e in allowed),
        max_attachment_size=max_file,
        max_attachments_total=max_total,
        rate_window_minutes=rate_window,
        trusted_authserv_ids=tuple(a.lower().rstrip(".") for a in authserv),
    )
