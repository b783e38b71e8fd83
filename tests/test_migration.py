"""Upgrading a database made by an earlier ticketd keeps what it had working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from maild.store.sqlite.schema import connect_file as connect_sync
from maild.store.sqlite.schema import migration_files


def test_staff_of_an_earlier_version_keep_working_everywhere(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, sql in migration_files():
        if number > 4:
            break
        conn.executescript(sql.read_text())
    conn.execute("PRAGMA user_version=4")
    conn.execute("INSERT INTO departments (name, created_at) VALUES ('Support', 'x'), ('Billing', 'x')")
    conn.execute("INSERT INTO staff (email, name, username, created_at) VALUES ('sam@h.example', 'Sam', 'sam', 'x')")
    conn.close()
    upgraded = connect_sync(path)
    rows = upgraded.execute("SELECT d.name, x.member, x.notify FROM staff_departments x"
                            " JOIN departments d ON d.id = x.department_id ORDER BY d.name").fetchall()
    assert rows == [("Billing", 1, 0), ("Support", 1, 0)]
    assert upgraded.execute("SELECT is_admin, signature FROM staff").fetchone() == (0, "")
    upgraded.close()
