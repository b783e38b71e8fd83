"""What every stage receives: the message in hand (:class:`MessageContext`) and the shared
environment (:class:`Env`: database, settings, clock, departments)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from maild.addressbook import AddressBook, subject_token_pattern
from maild.clock import Clock
from maild.config import Settings
from maild.desk.core import StoredFile
from maild.desk.events import Event
from maild.pipeline.parse import ParsedMail
from maild.store.db import Database
from maild.store.inbound import InboundRow
from maild.store.staff import StaffMember
from maild.store.tickets import Ticket

if TYPE_CHECKING:
    from maild.desk.desk import Desk
    from maild.notify.follow import Notifier
    from maild.notify.tokens import Signer
    from maild.outcomes import Outcome
    from maild.pipeline.staffmail import StaffMail


@dataclass(frozen=True)
class DepartmentRef:
    id: int
    name: str


@dataclass
class MessageContext:
    inbound: InboundRow
    raw: bytes
    mail: ParsedMail
    department: DepartmentRef | None = None
    ticket: Ticket | None = None          # the existing ticket this message replies to
    threaded_by: str = ""                      # how it was matched: in-reply-to, references, subject
    files: list[StoredFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    badge: str = "Guest"                       # Owner, Authorized User, Sub-account, Registered User, Guest, Operator
    client_id: int | None = None               # the account a new ticket belongs to
    roles: dict[int, str] = field(default_factory=dict)   # account id → owner/user/contact of the author
    staff: StaffMember | None = None
    registered: bool = False                   # the author has an account or is a registered user
    known: bool = False                        # the author's address is a client's, a registered user's or staff's
                                               # (also when, with no usable From, it earns no badge)
    via_token: bool = False                    # staff proven by the signed reply token of their notification
    staff_mail: StaffMail | None = None        # a staff member's commands and text (staff_commands stage)
    bounce: Any = None                         # what a delivery report is about (bounce rule → its action)
    events: list[Event] = field(default_factory=list)   # what apply did, for the notify stage
    result: Outcome | None = None              # apply's outcome, returned by the notify stage

    @property
    def null_return_path(self) -> bool:
        """MAIL FROM:<> as received; for mail from files or IMAP, the Return-Path header the MTA wrote."""
        if self.inbound.envelope_from is not None:
            return self.inbound.envelope_from == ""
        return "return-path" in self.mail.headers and self.mail.header("return-path").strip() in ("<>", "")

    @property
    def author_email(self) -> str:
        """The From address; with no usable From, the Reply-To, then the envelope sender (an unclear From,
        such as ``owner@a <attacker@b>``, makes the author unknown instead): see ParsedMail.author."""
        return self.mail.author(self.inbound.envelope_from)[0]


@dataclass
class Env:
    db: Database
    settings: Settings
    clock: Clock
    departments: dict[str, int]                # name → id
    desk: Desk
    notifier: Notifier
    signer: Signer
    deferred: list[Event] | None = None        # set by the worker: events to follow at the end of its batch
    book: AddressBook = field(init=False)
    token_re: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.book = AddressBook(self.settings)
        self.token_re = subject_token_pattern(self.settings)

    def department(self, name: str) -> DepartmentRef | None:
        for known, dept_id in self.departments.items():
            if known.lower() == name.lower():
                return DepartmentRef(dept_id, known)
        return None
