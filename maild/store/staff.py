"""Queries on staff members: their rights (admin, departments worked), the departments whose mail they
want, signatures, and the tickets they watch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from maild.store.db import NO_LIMIT, Database, Row

COLUMNS = "s.id, s.email, s.name, s.username, s.is_admin, s.signature, s.created_at"


@dataclass(frozen=True)
class StaffMember:
    """A staff member as the store reads them."""

    id: int
    email: str          # lower case
    name: str           # display name ("" when none is set: the username shows)
    username: str
    is_admin: bool      # sees every department
    signature: str      # added under their replies
    created_at: str

    @classmethod
    def from_row(cls, row: Row) -> StaffMember:
        return cls(id=row["id"], email=row["email"], name=row["name"], username=row["username"],
                   is_admin=bool(row["is_admin"]), signature=row["signature"], created_at=row["created_at"])


def _member(row: Row | None) -> StaffMember | None:
    return StaffMember.from_row(row) if row is not None else None


async def by_username(db: Database, username: str) -> StaffMember | None:
    return _member(await db.fetchone(f"SELECT {COLUMNS} FROM staff s WHERE lower(s.username) = lower(?)",
                                     (username,)))


async def by_email(db: Database, email: str) -> StaffMember | None:
    return _member(await db.fetchone(f"SELECT {COLUMNS} FROM staff s WHERE s.email = ?", (email.strip().lower(),)))


async def by_id(db: Database, staff_id: int) -> StaffMember | None:
    return _member(await db.fetchone(f"SELECT {COLUMNS} FROM staff s WHERE s.id = ?", (staff_id,)))


async def with_access(db: Database, names: Iterable[str], department_id: int) -> list[StaffMember]:
    """The staff among usernames ``names`` who may see the department's tickets (admins and its members)."""
    wanted = sorted({n.lower() for n in names})
    if not wanted:
        return []
    rows = await db.fetchall(
        f"SELECT {COLUMNS} FROM staff s WHERE lower(s.username) IN ({','.join('?' * len(wanted))})"
        " AND (s.is_admin = 1 OR EXISTS (SELECT 1 FROM staff_departments x WHERE x.staff_id = s.id"
        " AND x.department_id = ? AND x.member = 1))",
        (*wanted, department_id))
    return [StaffMember.from_row(r) for r in rows]


async def save(db: Database, *, email: str, username: str, name: str | None, is_admin: bool | None,
               signature: str | None, stamp: str) -> int:
    """Add the staff member ``email`` or update the fields given (None keeps what is there)."""
    email = email.strip().lower()
    row = await db.fetchone("SELECT * FROM staff WHERE email = ?", (email,))
    if row is None:
        return await db.insert(
            "INSERT INTO staff (email, name, username, is_admin, signature, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (email, name or "", username, int(bool(is_admin)), signature or "", stamp))
    await update(db, row["id"], username=username, name=name, is_admin=is_admin, signature=signature)
    return int(row["id"])


async def update(db: Database, staff_id: int, *, email: str | None = None, username: str | None = None,
                 name: str | None = None, is_admin: bool | None = None, signature: str | None = None) -> None:
    fields = {"email": email.strip().lower() if email else None, "username": username, "name": name,
              "is_admin": None if is_admin is None else int(is_admin), "signature": signature}
    given = {k: v for k, v in fields.items() if v is not None}
    if given:
        sets = ", ".join(f"{k} = ?" for k in given)
        await db.execute(f"UPDATE staff SET {sets} WHERE id = ?", (*given.values(), staff_id))


async def set_departments(db: Database, staff_id: int, member: Sequence[int] | None,
                          notify: Sequence[int] | None) -> None:
    """Replace the departments ``staff_id`` works in (``member``) and/or hears from (``notify``)."""
    for column, ids in (("member", member), ("notify", notify)):
        if ids is None:
            continue
        await db.execute(f"UPDATE staff_departments SET {column} = 0 WHERE staff_id = ?", (staff_id,))
        for dept in ids:
            await db.execute(
                f"INSERT INTO staff_departments (staff_id, department_id, {column}) VALUES (?, ?, 1)"
                f" ON CONFLICT (staff_id, department_id) DO UPDATE SET {column} = 1", (staff_id, dept))
    await db.execute("DELETE FROM staff_departments WHERE staff_id = ? AND member = 0 AND notify = 0", (staff_id,))


async def departments_of(db: Database, staff_id: int) -> tuple[set[int], set[int]]:
    """(departments worked in, departments whose mail is wanted) of ``staff_id``."""
    rows = await db.fetchall("SELECT * FROM staff_departments WHERE staff_id = ?", (staff_id,))
    return ({r["department_id"] for r in rows if r["member"]}, {r["department_id"] for r in rows if r["notify"]})


async def listing(db: Database, limit: int | None = None) -> list[Row]:
    """Staff members by username, with their departments; ``limit`` None: all."""
    return await db.fetchall(
        "SELECT s.*,"
        " (SELECT group_concat(d.name, ',') FROM staff_departments x JOIN departments d ON d.id = x.department_id"
        "  WHERE x.staff_id = s.id AND x.member = 1) AS departments,"
        " (SELECT group_concat(d.name, ',') FROM staff_departments x JOIN departments d ON d.id = x.department_id"
        "  WHERE x.staff_id = s.id AND x.notify = 1) AS notify"
        " FROM staff s ORDER BY s.username LIMIT ?", (NO_LIMIT if limit is None else limit,))


async def watch(db: Database, ticket_id: int, staff_id: int) -> bool:
    return bool(await db.execute("INSERT INTO watchers (ticket_id, staff_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                 (ticket_id, staff_id)))


async def unwatch(db: Database, ticket_id: int, staff_id: int) -> bool:
    return bool(await db.execute("DELETE FROM watchers WHERE ticket_id = ? AND staff_id = ?", (ticket_id, staff_id)))


async def watchers(db: Database, ticket_id: int) -> list[StaffMember]:
    rows = await db.fetchall(
        f"SELECT {COLUMNS} FROM staff s JOIN watchers w ON w.staff_id = s.id WHERE w.ticket_id = ? ORDER BY s.id",
        (ticket_id,))
    return [StaffMember.from_row(r) for r in rows]


async def candidates(db: Database, ticket_ids: Sequence[int], ids: Sequence[int]) -> list[Row]:
    """In one query, every staff member a notification about these tickets may go to, per ticket
    (``for_ticket``): its watchers (``watching``), its department's members who want its mail
    (``dept_notify``), and the members ``ids`` (flagged, assigned, mentioned); ``can_see``: an admin or a
    member of the ticket's department (no one else gets mail about it, a former watcher included)."""
    tids, extra = sorted(set(ticket_ids)), sorted(set(ids))
    if not tids:
        return []
    extra_marks = ",".join("?" * len(extra)) or "NULL"
    return await db.fetchall(
        "SELECT t.id AS for_ticket, s.*,"
        " EXISTS (SELECT 1 FROM watchers w WHERE w.ticket_id = t.id AND w.staff_id = s.id) AS watching,"
        " EXISTS (SELECT 1 FROM staff_departments x WHERE x.staff_id = s.id AND x.department_id = t.department_id"
        "  AND x.notify = 1 AND (x.member = 1 OR s.is_admin = 1)) AS dept_notify,"
        " (s.is_admin = 1 OR EXISTS (SELECT 1 FROM staff_departments x WHERE x.staff_id = s.id"
        "  AND x.department_id = t.department_id AND x.member = 1)) AS can_see"
        " FROM tickets t JOIN staff s ON s.id IN (SELECT staff_id FROM watchers WHERE ticket_id = t.id)"
        " OR s.id IN (SELECT staff_id FROM staff_departments WHERE department_id = t.department_id AND notify = 1)"
        f" OR s.id IN ({extra_marks})"
        f" WHERE t.id IN ({','.join('?' * len(tids))}) ORDER BY t.id, s.id", (*extra, *tids))


async def set_password(db: Database, staff_id: int, password_hash: str) -> None:
    await db.execute("UPDATE staff SET password_hash = ? WHERE id = ?", (password_hash, staff_id))


async def set_disabled(db: Database, staff_id: int, disabled: bool) -> None:
    await db.execute("UPDATE staff SET disabled = ? WHERE id = ?", (int(disabled), staff_id))


async def login_record(db: Database, username: str) -> tuple[StaffMember, str, bool] | None:
    """For a login: the member named ``username`` (any case), their password hash ("" when none is set)
    and whether the account is disabled."""
    row = await db.fetchone(f"SELECT {COLUMNS}, s.password_hash, s.disabled FROM staff s"
                            f" WHERE lower(s.username) = lower(?)", (username.strip(),))
    if row is None:
        return None
    return StaffMember.from_row(row), row["password_hash"], bool(row["disabled"])


async def working_in(db: Database, departments: Sequence[int] | None = None) -> list[StaffMember]:
    """Staff who may work on tickets of any of ``departments`` (admins and their members), by username;
    every staff member when ``departments`` is None. Turned-off accounts are left out."""
    if departments is None:
        rows = await db.fetchall(f"SELECT {COLUMNS} FROM staff s WHERE s.disabled = 0 ORDER BY s.username")
    else:
        marks = ",".join("?" * len(departments)) or "NULL"
        rows = await db.fetchall(
            f"SELECT {COLUMNS} FROM staff s WHERE s.disabled = 0 AND (s.is_admin = 1 OR EXISTS (SELECT 1 FROM"
            f" staff_departments x WHERE x.staff_id = s.id AND x.department_id IN ({marks}) AND x.member = 1))"
            " ORDER BY s.username", list(departments))
    return [StaffMember.from_row(r) for r in rows]
