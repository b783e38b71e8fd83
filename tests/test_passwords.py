"""Staff web passwords: argon2 hashes set with `ticketd staff passwd`, weak ones refused, accounts turned
off and on (issue 12, step 1)."""

from __future__ import annotations

import pytest

from maild import passwords
from tests.helpers import Instance

pytestmark = pytest.mark.both_engines


def record(inst: Instance, username: str) -> tuple[str, int]:
    (row,) = inst.query("SELECT password_hash, disabled FROM staff WHERE username = ?", (username,))
    return row["password_hash"], int(row["disabled"])


def test_a_password_is_stored_as_an_argon2_hash_and_checked(instance: Instance):
    instance.cli("staff", "add", "ada@helpdesk.example", "--admin")
    done = instance.cli("staff", "passwd", "ada", input=b"correct horse battery\n")
    assert done.stdout.decode().strip() == "ada: password set"
    stored, disabled = record(instance, "ada")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored and disabled == 0
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse battery ") and not passwords.verify("", "")
    assert not passwords.needs_rehash(stored)
    # Set again: a new salt, a new hash.
    instance.cli("staff", "passwd", "ADA", input=b"correct horse battery\n")
    assert record(instance, "ada")[0] != stored


def test_weak_passwords_and_unknown_staff_are_refused(instance: Instance):
    instance.cli("staff", "add", "bo@helpdesk.example")
    for weak, words in ((b"short\n", b"too short"), (b"password\n", b"too short"), (b"bo\n", b"too short"),
                        (b"0123456789\n", b"too easy")):
        proc = instance.cli("staff", "passwd", "bo", input=weak, check=False)
        assert proc.returncode == 65 and words in proc.stderr and b"nothing changed" in proc.stderr, proc.stderr
    assert record(instance, "bo")[0] == ""
    proc = instance.cli("staff", "passwd", "nobody", input=b"a long enough password\n", check=False)
    assert proc.returncode == 66 and b"no staff member 'nobody'" in proc.stderr


def test_an_account_is_turned_off_and_on(instance: Instance):
    instance.cli("staff", "add", "cy@helpdesk.example")
    instance.cli("staff", "passwd", "cy", input=b"a long enough password\n")
    assert instance.cli("staff", "passwd", "cy", "--disable").stdout.decode().strip() == "cy: disabled"
    stored, disabled = record(instance, "cy")
    assert disabled == 1 and passwords.verify(stored, "a long enough password")   # the password stays
    instance.cli("staff", "passwd", "cy", "--enable")
    assert record(instance, "cy")[1] == 0
