"""maild.notify.headers: Message-ID, References, Thread-Index, subjects."""

from __future__ import annotations

import base64
import random
import re
from datetime import UTC, datetime, timedelta
from email.header import Header

import pytest

from maild.notify import headers
from maild.notify.headers import (
    clean_subject,
    extend_thread_index,
    new_message_id,
    new_thread_index,
    references,
    thread_subject,
    ticket_of_message_id,
)

TOKEN_RE = re.compile(r"\[\s*Ticket\s*#\s*(\d{4,12})\s*\]", re.I)
TOKEN = "[Ticket #123456]"
EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)


# -- Message-ID ------------------------------------------------------------------------------------------


def test_message_id_round_trip():
    mid = new_message_id(42, "desk.example.com")
    assert re.fullmatch(r"<t42\.[0-9a-f]{16}@desk\.example\.com>", mid)
    assert ticket_of_message_id(mid, "desk.example.com") == 42
    assert ticket_of_message_id(f"  {mid}\r\n", "DESK.example.com") == 42
    assert ticket_of_message_id(mid.upper(), "desk.example.com") == 42
    assert new_message_id(42, "desk.example.com") != mid


@pytest.mark.parametrize(
    "mid",
    [
        "", "<>", "<t42.0123456789abcdef@other.example>", "<t42.0123456789abcdef@desk.example.com.evil>",
        "<42.0123456789abcdef@desk.example.com>", "<t42.0123456789abcde@desk.example.com>",
        "<t42.0123456789abcdefg@desk.example.com>", "t42.0123456789abcdef@desk.example.com",
        "<t042.0123456789abcdef@desk.example.com>", "<tx.0123456789abcdef@desk.example.com>",
        "<t42.0123456789abcdef@desk.example.com> <t43.0123456789abcdef@desk.example.com>",
        "<t" + "9" * 30 + ".0123456789abcdef@desk.example.com>", "<CAF=abc@mail.gmail.com>", "x" * 5000,
    ],
)
def test_foreign_message_ids(mid):
    assert ticket_of_message_id(mid, "desk.example.com") is None


def test_new_message_id_refuses_bad_input():
    for domain in ("", "a b", "a@b", "<x>"):
        with pytest.raises(ValueError):
            new_message_id(1, domain)
    for tid in (-1, True):
        with pytest.raises(ValueError):
            new_message_id(tid, "x.example")


# -- References ------------------------------------------------------------------------------------------


def _line(ids: list[str]) -> int:
    return len(("References: " + " ".join(ids)).encode())


def test_references_fit_unchanged():
    chain = ["<root@x>", "<a@x>", "", "<b@x>", "<a@x>", "<c@x>"]
    assert references(chain, "<root@x>") == ["<root@x>", "<a@x>", "<b@x>", "<c@x>"]


def test_references_root_moved_first_and_added_when_missing():
    assert references(["<a@x>", "<root@x>", "<b@x>"], "<root@x>") == ["<root@x>", "<a@x>", "<b@x>"]
    assert references(["<a@x>", "<b@x>"], "<root@x>") == ["<root@x>", "<a@x>", "<b@x>"]
    assert references(["<a@x>", "<b@x>"], "") == ["<a@x>", "<b@x>"]
    assert references([], "<root@x>") == ["<root@x>"]
    assert references([], "") == []


def test_references_long_ticket():
    def mid(i: int) -> str:
        return f"<{i:04d}." + "x" * 231 + "@example.com>"

    chain = [mid(i) for i in range(200)]
    assert all(len(m) == 250 for m in chain)
    root = chain[0]
    refs = references(chain, root)
    assert _line(refs) <= 3000
    assert refs[0] == root
    assert refs[1] == chain[1]  # the oldest after the root
    assert refs[-1] == chain[-1]  # the newest
    assert refs == sorted(refs)  # chronological order kept
    # Exactly as many as fit: root + oldest + the newest contiguous run.
    n = len(refs)
    assert refs[2:] == chain[200 - (n - 2):]
    assert _line(refs + [chain[200 - (n - 2) - 1]]) > 3000
    assert n == (3000 - len("References: ") + 1) // 251 == 11


def test_references_with_duplicates_and_blanks_in_long_chain():
    chain = []
    for i in range(200):
        m = f"<m{i}-" + "y" * 240 + ">"
        chain += [m, "", m]
    refs = references(chain, chain[0], max_bytes=2000)
    assert _line(refs) <= 2000
    assert len(refs) == len(set(refs))
    assert refs[0] == chain[0] and refs[-1] == chain[-1]


@pytest.mark.parametrize("max_bytes", [300, 600, 1000, 3000])
def test_references_limit_holds_for_any_budget(max_bytes):
    rng = random.Random(max_bytes)
    chain = [f"<{i}.{'z' * rng.randint(5, 120)}@h>" for i in range(300)]
    refs = references(chain, chain[0], max_bytes=max_bytes)
    assert _line(refs) <= max_bytes
    assert refs[-1] == chain[-1]
    assert refs[0] == chain[0]
    positions = [chain.index(r) for r in refs]
    assert positions == sorted(positions)


def test_references_priority_when_tight():
    root, a, b, c = "<root@x>", "<aaaa@x>", "<bbbb@x>", "<cccc@x>"
    # "References: " is 12 bytes; each id is 8 bytes plus a space.
    assert references([root, a, b, c], root, max_bytes=12 + 8 * 4 + 3) == [root, a, b, c]
    assert references([root, a, b, c], root, max_bytes=12 + 8 * 3 + 2) == [root, a, c]
    assert references([root, a, b, c], root, max_bytes=12 + 8 * 2 + 1) == [root, c]
    assert references([root, a, b, c], root, max_bytes=12 + 8) == [root]


def test_references_byte_limit_is_hard():
    huge = "<" + "h" * 100 + "@x>"
    assert references([huge, "<a@x>"], huge, max_bytes=50) == ["<a@x>"]
    assert references([huge], huge, max_bytes=50) == []
    # Non-ASCII ids are counted in bytes, not characters.
    refs = references(["<é" * 10 + "@x>", "<b@x>"], "", max_bytes=12 + 30)  # 29 chars, but 39 bytes
    assert refs == ["<b@x>"]


# -- Thread-Index ----------------------------------------------------------------------------------------


def test_new_thread_index_known_header():
    # 2023-01-01T00:00Z = (11644473600 + 1672531200) s after 1601-01-01 = 133170048000000000 ticks
    # = 0x01D91D73FDC30000; its high 48 bits are the first six bytes.
    raw = base64.b64decode(new_thread_index(datetime(2023, 1, 1, tzinfo=UTC)), validate=True)
    assert len(raw) == 22
    assert raw[:6] == bytes.fromhex("01d91d73fdc3")
    assert raw[0] == 0x01  # the spec's "reserved" byte
    other = base64.b64decode(new_thread_index(datetime(2023, 1, 1, tzinfo=UTC)))
    assert other[:6] == raw[:6] and other[6:] != raw[6:]  # fresh GUID each time
    # A naive datetime is UTC.
    assert base64.b64decode(new_thread_index(datetime(2023, 1, 1)))[:6] == raw[:6]


# A parent whose FILETIME is a multiple of 10 ticks, so datetimes (microseconds) hit it exactly.
PARENT = bytes.fromhex("01d900000002") + bytes(range(16))
PARENT_FT = 0x01D9000000020000
PARENT_TIME = EPOCH_1601 + timedelta(microseconds=PARENT_FT // 10)


def test_extend_known_vector_short_delta():
    # delta = 1 h = 36_000_000_000 ticks; DC = 0; 36e9 >> 18 = 137329 = 0x00021871.
    assert PARENT_FT % 10 == 0
    child = extend_thread_index(base64.b64encode(PARENT).decode(), PARENT_TIME + timedelta(hours=1))
    assert child is not None
    raw = base64.b64decode(child, validate=True)
    assert raw[:22] == PARENT
    assert len(raw) == 27
    assert raw[22:26] == bytes.fromhex("00021871")
    assert raw[26] & 0x0F == 0  # sequence: first child


def test_extend_known_vector_long_delta():
    # delta = 10**15 ticks (~3.2 years) >= 2**49: DC = 1; 10**15 >> 23 = 0x071AFD49 → 0x871AFD49.
    child = extend_thread_index(base64.b64encode(PARENT).decode(), PARENT_TIME + timedelta(microseconds=10**14))
    assert child is not None
    assert base64.b64decode(child)[22:26] == bytes.fromhex("871afd49")


def test_child_block_bit_layout():
    assert headers._child_block(0, 0, 0) == bytes(5)
    assert headers._child_block((1 << 49) - 1, 0, 0) == bytes.fromhex("7fffffff00")
    assert headers._child_block(1 << 49, 0xA, 0x3) == bytes.fromhex("84000000a3")
    assert headers._child_block(1 << 18, 0xF, 0x1F) == bytes.fromhex("00000001ff")


def test_extend_chain_grows_by_five_and_keeps_prefix():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    index = new_thread_index(now)
    previous = base64.b64decode(index)
    for n in range(1, 20):
        nxt = extend_thread_index(index, now + timedelta(minutes=n))
        assert nxt is not None
        raw = base64.b64decode(nxt, validate=True)
        assert len(raw) == 22 + 5 * n
        assert raw.startswith(previous)
        assert raw[-1] & 0x0F == (n - 1) % 16  # sequence = parent's child count
        # Time deltas are measured from the header, so they grow with n.
        assert int.from_bytes(raw[-5:-1], "big") > int.from_bytes(previous[-5:-1], "big") or n == 1
        index, previous = nxt, raw


def test_extend_clock_going_backwards_is_zero_delta():
    child = extend_thread_index(base64.b64encode(PARENT).decode(), PARENT_TIME - timedelta(days=1))
    assert child is not None
    assert base64.b64decode(child)[22:26] == bytes(4)


def test_extend_accepts_folded_header_value():
    value = base64.b64encode(PARENT).decode()
    folded = value[:10] + "\r\n " + value[10:]
    assert extend_thread_index(folded, PARENT_TIME) is not None


@pytest.mark.parametrize(
    "parent",
    [
        "", "not base64!!", base64.b64encode(bytes(21)).decode(), base64.b64encode(bytes(23)).decode(),
        base64.b64encode(bytes(22 + 4)).decode(), base64.b64encode(bytes(22 + 6)).decode(),
        base64.b64encode(bytes(22))[:-1].decode(), "AQ==", "ÄÖÜ" * 10, base64.b64encode(bytes(22)).decode() + "@",
    ],
)
def test_extend_invalid_parent(parent):
    assert extend_thread_index(parent, datetime(2024, 1, 1, tzinfo=UTC)) is None


def test_extend_valid_sizes():
    for size in (22, 27, 32, 22 + 5 * 40):
        out = extend_thread_index(base64.b64encode(bytes([1]) + bytes(size - 1)).decode(), datetime.now(UTC))
        assert out is not None and len(base64.b64decode(out)) == size + 5


# -- subjects --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Hello world", "Hello world"),
        ("Re: Hello", "Hello"),
        ("Re: AW: Fwd: RE: Hello", "Hello"),
        ("RE[2]: Re(3): re : Hello", "Hello"),
        ("Fw: WG: SV: VS: Antw: Antwort: Hello", "Hello"),
        ("Réf: RÉF: Rif: Odp: Ynt: Vá: VÁ: Ref: Ha: R: Hello", "Hello"),
        ("回复：答复: 转发： 回覆: 轉寄: Hello", "Hello"),
        ("Re:Re:Hello", "Hello"),
        ("[Ticket #123456] Hello", "Hello"),
        ("Re: [ticket#123456] AW: [ Ticket # 123456 ] Hello", "Hello"),
        ("Hello [Ticket #123456] world", "Hello world"),
        ("  Hello \t\r\n  world  ", "Hello world"),
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
        ("Re: =?utf-8?b?W1RpY2tldCAjMTIzNDU2XSBSZTogSGVsbG8=?=", "Hello"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        ("=?iso-8859-1?q?caf=E9?= now", "café now"),
        ("=?utf-8?b?broken!?= x", "=?utf-8?b?broken!?= x"),
        ("", "(no subject)"),
        ("Re: ", "(no subject)"),
        ("Re: AW: [Ticket #123456]", "(no subject)"),
        ("Repair: the boiler", "Repair: the boiler"),
        ("Reference manual", "Reference manual"),
        ("Hello Re: world", "Hello Re: world"),
    ],
)
def test_clean_subject(raw, clean):
    assert clean_subject(raw, TOKEN_RE) == clean


def test_thread_subject_forms():
    assert thread_subject("Re: Printer broken", TOKEN, TOKEN_RE) == "[Ticket #123456] Printer broken"
    assert thread_subject("Printer broken", TOKEN, TOKEN_RE, reply=True) == "Re: [Ticket #123456] Printer broken"
    assert thread_subject("", TOKEN, TOKEN_RE) == "[Ticket #123456] (no subject)"


@pytest.mark.parametrize("original", ["Printer broken", "Rechnung über 100 € – Frage zur Zahlung", "打印机坏了 help"])
def test_thread_subject_is_stable_over_client_round_trips(original):
    rng = random.Random(original)
    prefixes = ["Re: ", "RE: ", "AW: ", "Fwd: ", "FW: ", "Re[2]: ", "回复：", "SV:"]
    tokens = [TOKEN, "[ticket #123456]", "[Ticket#123456]", "[ TICKET # 123456 ]"]
    expected = clean_subject(original, TOKEN_RE)
    ours = thread_subject(original, TOKEN, TOKEN_RE)
    for round_no in range(30):
        # The client prefixes its own marker(s), sometimes adds its own copy of the token, and may
        # encode the whole thing as RFC 2047 words (folded, split across several words).
        theirs = "".join(rng.choice(prefixes) for _ in range(rng.randint(1, 3))) + ours
        if rng.random() < 0.5:
            theirs = rng.choice(tokens) + " " + theirs
        if round_no % 3 == 0:
            theirs = Header(theirs, "utf-8", maxlinelen=40).encode()
            assert "=?utf-8?" in theirs
        ours = thread_subject(theirs, TOKEN, TOKEN_RE, reply=round_no % 2 == 0)
        assert len(TOKEN_RE.findall(ours)) == 1
        assert ours == ("Re: " if round_no % 2 == 0 else "") + f"{TOKEN} {expected}"
        assert clean_subject(ours, TOKEN_RE) == expected
    assert expected == " ".join(original.split())
