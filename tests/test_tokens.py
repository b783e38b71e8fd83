"""maild.keys (the installation secret) and maild.notify.tokens (signed plus-address tags)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import stat
import threading
from pathlib import Path

import pytest

from maild import keys
from maild.keys import load_or_create_secret
from maild.notify.tokens import ReplyToken, Signer, tag_of, tags_in, with_tag

SECRET = bytes(range(32))
TAG_CHARS = re.compile(r"[a-z0-9-]+")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- keys ------------------------------------------------------------------------------------------------


def test_secret_created_0600_and_stable(tmp_path):
    path = tmp_path / "secret.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert _mode(path) == 0o600
    assert path.read_text().strip() == first.hex()
    assert load_or_create_secret(path) == first
    assert load_or_create_secret(path) == first
    # No temp files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]


def test_secret_0600_even_with_a_hostile_umask(tmp_path):
    old = os.umask(0o277)  # would strip the owner's read bit from a plain O_CREAT 0600
    try:
        secret = load_or_create_secret(tmp_path / "secret.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secret.key") == 0o600
    assert load_or_create_secret(tmp_path / "secret.key") == secret


def test_two_secrets_differ(tmp_path):
    assert load_or_create_secret(tmp_path / "a.key") != load_or_create_secret(tmp_path / "b.key")


def test_existing_secret_is_read(tmp_path):
    path = tmp_path / "secret.key"
    path.write_text("AB" * 32 + "\n")
    path.chmod(0o600)
    assert load_or_create_secret(path) == b"\xab" * 32


def test_concurrent_threads_agree(tmp_path):
    path = tmp_path / "secret.key"
    n = 16
    barrier = threading.Barrier(n)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(load_or_create_secret(path))
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == n
    assert len(set(results)) == 1
    assert bytes.fromhex(path.read_text()) == results[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]


def _proc_worker(path: str, queue: multiprocessing.Queue) -> None:
    queue.put(load_or_create_secret(Path(path)).hex())


def test_concurrent_processes_agree(tmp_path):
    path = tmp_path / "secret.key"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_proc_worker, args=(str(path), queue)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    queue.close()
    queue.join_thread()
    assert len(set(got)) == 1
    assert path.read_text().strip() == got[0]


def test_lost_race_reads_the_winner(tmp_path, monkeypatch):
    # Another process creates the file between our temp write and our link: we must use theirs.
    path = tmp_path / "secret.key"
    real_link = os.link

    def racing_link(src, dst):
        Path(dst).write_text("cd" * 32 + "\n")
        Path(dst).chmod(0o600)
        return real_link(src, dst)

    monkeypatch.setattr(keys.os, "link", racing_link)
    assert load_or_create_secret(path) == b"\xcd" * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]


@pytest.mark.parametrize(
    "content",
    ["", "abc", "zz" * 32, "ab" * 31, "ab" * 33, "ab" * 16 + " " + "ab" * 16, "\xe9" * 64],
)
def test_bad_content_refused(tmp_path, content):
    path = tmp_path / "secret.key"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ValueError) as err:
        load_or_create_secret(path)
    assert str(path) in str(err.value)
    assert "remove" in str(err.value).lower()
    assert path.read_text(encoding="utf-8") == content  # never overwritten


def test_wide_permissions_fixed(tmp_path, caplog):
    path = tmp_path / "secret.key"
    secret = load_or_create_secret(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="ticketd"):
        assert load_or_create_secret(path) == secret
    assert _mode(path) == 0o600
    assert any(r.name == "ticketd" and r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ticketd"):
        load_or_create_secret(path)
    assert caplog.records == []  # 0600 is quiet


# -- reply tags ------------------------------------------------------------------------------------------


def test_reply_tag_round_trip_client():
    s = Signer(SECRET)
    tag = s.reply_tag("123456")
    assert re.fullmatch(r"t123456-[a-z2-7]{16}", tag)
    assert s.read_reply_tag(tag) == ReplyToken("123456", None)


def test_reply_tag_round_trip_staff():
    s = Signer(SECRET)
    tag = s.reply_tag("123456", 7)
    assert re.fullmatch(r"t123456-s7-[a-z2-7]{16}", tag)
    assert s.read_reply_tag(tag) == ReplyToken("123456", 7)
    assert s.read_reply_tag(s.reply_tag("123456", 0)) == ReplyToken("123456", 0)


def test_reply_tag_is_deterministic_and_secret_dependent():
    assert Signer(SECRET).reply_tag("123456") == Signer(SECRET).reply_tag("123456")
    other = Signer(b"\x01" * 32)
    assert other.reply_tag("123456") != Signer(SECRET).reply_tag("123456")
    assert other.read_reply_tag(Signer(SECRET).reply_tag("123456")) is None
    assert other.read_reply_tag(Signer(SECRET).reply_tag("123456", 3)) is None


def test_reply_tag_bound_to_ticket_and_staff():
    s = Signer(SECRET)
    mac = s.reply_tag("111111").rsplit("-", 1)[1]
    assert s.read_reply_tag(f"t222222-{mac}") is None
    staff_mac = s.reply_tag("111111", 5).rsplit("-", 1)[1]
    assert s.read_reply_tag(f"t111111-s6-{staff_mac}") is None
    assert s.read_reply_tag(f"t111111-{staff_mac}") is None  # staff tag stripped to the client form
    assert s.read_reply_tag(f"t111111-s5-{mac}") is None  # client tag promoted to staff
    assert s.read_reply_tag(f"t222222-s5-{staff_mac}") is None


def test_reply_tag_case_insensitive():
    s = Signer(SECRET)
    tag = s.reply_tag("123456", 42)
    assert TAG_CHARS.fullmatch(tag)
    assert s.read_reply_tag(tag.upper()) == ReplyToken("123456", 42)
    assert s.read_reply_tag(tag.title()) == ReplyToken("123456", 42)


def test_reply_tag_flipped_mac_char_rejected():
    s = Signer(SECRET)
    tag = s.reply_tag("123456")
    last = tag[-1]
    forged = tag[:-1] + ("a" if last != "a" else "b")
    assert s.read_reply_tag(forged) is None


@pytest.mark.parametrize(
    "junk",
    [
        "", "t", "t-", "t--", "t123456", "t123456-", "t123456-s-", "t-abcdefghijklmnop", "x123456-abcdefghijklmnop",
        "t123456-abcdefghijklmno1", "t123456-abcdefghijklmnopq", "t" + "1" * 5000 + "-abcdefghijklmnop",
        "t123456-\u212aabcdefghijklmno", "t١٢٣٤٥٦-abcdefghijklmnop", "t123456-s01-abcdefghijklmnop",
        "t123456-s-1-abcdefghijklmnop", " t123456-abcdefghijklmnop", "t123456-abcdefghijklmnop\n", "ü" * 100,
        "b12-abcdefghijklmnop",
    ],
)
def test_read_reply_tag_malformed_is_none(junk):
    assert Signer(SECRET).read_reply_tag(junk) is None


def test_read_reply_tag_never_raises_on_non_strings():
    s = Signer(SECRET)
    for value in (None, 123, b"t1-abc", ["t1"]):
        assert s.read_reply_tag(value) is None  # type: ignore[arg-type]


def test_leading_or_trailing_junk_around_valid_tag_rejected():
    s = Signer(SECRET)
    tag = s.reply_tag("123456", 9)
    assert s.read_reply_tag(tag + "x") is None
    assert s.read_reply_tag("x" + tag) is None
    assert s.read_reply_tag(tag.replace("-s9-", "-s09-")) is None


@pytest.mark.parametrize("bad_tid", ["", "ABC123", "12-34", "12 34", "x" * 33, "١٢٣"])
def test_reply_tag_refuses_unusable_tid(bad_tid):
    with pytest.raises(ValueError):
        Signer(SECRET).reply_tag(bad_tid)


@pytest.mark.parametrize("bad_staff", [-1, True, 10**18, "5"])
def test_reply_tag_refuses_unusable_staff_id(bad_staff):
    with pytest.raises(ValueError):
        Signer(SECRET).reply_tag("123456", bad_staff)


def test_signer_refuses_short_secret():
    with pytest.raises(ValueError):
        Signer(b"")
    with pytest.raises(ValueError):
        Signer(b"short")


# -- bounce tags -----------------------------------------------------------------------------------------


def test_bounce_tag_round_trip():
    s = Signer(SECRET)
    tag = s.bounce_tag(42, "Alice@Example.COM")
    assert re.fullmatch(r"b42-[a-z2-7]{16}", tag)
    assert s.read_bounce_tag(tag) == 42
    assert s.verify_bounce_tag(tag, "alice@example.com") == 42
    assert s.verify_bounce_tag(tag, "ALICE@EXAMPLE.COM") == 42
    assert s.verify_bounce_tag(tag.upper(), "<alice@example.com>") == 42


def test_bounce_tag_bound_to_recipient_and_id():
    s = Signer(SECRET)
    tag = s.bounce_tag(42, "alice@example.com")
    assert s.verify_bounce_tag(tag, "bob@example.com") is None
    assert s.verify_bounce_tag(tag, "alice@example.org") is None
    mac = tag.split("-", 1)[1]
    assert s.verify_bounce_tag(f"b43-{mac}", "alice@example.com") is None
    # read_bounce_tag does not verify: the id comes back for a forged MAC, by contract.
    assert s.read_bounce_tag(f"b43-{mac}") == 43


def test_bounce_tag_wrong_secret_and_purpose():
    s = Signer(SECRET)
    tag = s.bounce_tag(42, "alice@example.com")
    assert Signer(b"\x02" * 32).verify_bounce_tag(tag, "alice@example.com") is None
    # A reply MAC must not double as a bounce MAC (purpose separation).
    reply_mac = s.reply_tag("42").rsplit("-", 1)[1]
    assert s.verify_bounce_tag(f"b42-{reply_mac}", "alice@example.com") is None


@pytest.mark.parametrize(
    "junk",
    [
        "", "b", "b-", "b42", "b42-", "b-abcdefghijklmnop", "b042-abcdefghijklmnop", "b4x-abcdefghijklmnop",
        "b" + "9" * 40 + "-abcdefghijklmnop", "b42-abcdefghijklmno", "b42-abcdefghijklmnop-x", "b٤٢-abcdefghijklmnop",
        "t42-abcdefghijklmnop",
    ],
)
def test_bounce_malformed_is_none(junk):
    s = Signer(SECRET)
    assert s.read_bounce_tag(junk) is None
    assert s.verify_bounce_tag(junk, "alice@example.com") is None


def test_bounce_tag_refuses_bad_id():
    for bad in (-1, True, 10**18):
        with pytest.raises(ValueError):
            Signer(SECRET).bounce_tag(bad, "a@b")


# -- address helpers -------------------------------------------------------------------------------------


def test_with_tag():
    assert with_tag("support@example.com", "t123-abc") == "support+t123-abc@example.com"
    assert with_tag("support+old+more@example.com", "t9-x") == "support+t9-x@example.com"
    assert with_tag(" bounces@Example.com ", "b1-x") == "bounces+b1-x@Example.com"
    for bad_tag in ("", "a+b", "a@b", "a b", "ü"):
        with pytest.raises(ValueError):
            with_tag("support@example.com", bad_tag)
    for bad_address in ("support", "@example.com", "support@"):
        with pytest.raises(ValueError):
            with_tag(bad_address, "t1-x")


def test_tag_of():
    assert tag_of("support+T123-ABC@example.com") == "t123-abc"
    assert tag_of("<support+x+y@example.com>") == "x+y"
    assert tag_of("support@example.com") is None
    assert tag_of("support+@example.com") is None
    assert tag_of("support+x") is None
    assert tag_of("") is None


def test_tags_in_keeps_order_and_dedupes():
    addrs = ["a+one@x", "b@x", "c+TWO@x", "d+one@y", "e+two@x", "f+three@x"]
    assert tags_in(addrs) == ["one", "two", "three"]
    assert tags_in([]) == []


def test_tag_survives_address_round_trip_with_lowercasing_mta():
    s = Signer(SECRET)
    addr = with_tag("support@example.com", s.reply_tag("654321", 3))
    mangled = addr.upper()  # an MTA that upper/lower-cases the local part
    assert s.read_reply_tag(tag_of(mangled) or "") == ReplyToken("654321", 3)
    bounce = with_tag("bounces@example.com", s.bounce_tag(7, "c@d.example"))
    assert s.verify_bounce_tag(tag_of(bounce.lower()) or "", "C@D.example") == 7


def test_non_ascii_lookalike_of_valid_tag_rejected():
    # "\u212a" (KELVIN SIGN) lower-cases to "k": a valid tag with it swapped in must still be refused.
    s = Signer(SECRET)
    tid = next(str(n) for n in range(100000, 200000) if "k" in s.reply_tag(str(n)))
    tag = s.reply_tag(tid)
    assert s.read_reply_tag(tag) == ReplyToken(tid, None)
    assert s.read_reply_tag(tag.replace("k", "\u212a")) is None
