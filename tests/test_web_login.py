"""Staff sign-in over real HTTP (issue 12, step 3): sessions in the database, CSRF in every form, failed
sign-ins limited per account, a turned-off account refused with a clear page, sign-out ending the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Instance
from tests.test_web import serving
from tests.webclient import PASSWORD, Browser

pytestmark = pytest.mark.both_engines


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[tuple[Instance, int]]:
    inst = Instance(tmp_path, database_url=database_url)
    inst.cli("staff", "add", "ada@helpdesk.example", "--name", "Ada Lovelace", "--admin")
    inst.cli("staff", "passwd", "ada", input=f"{PASSWORD}\n".encode())
    with serving(inst) as port:
        yield inst, port


def test_sign_in_and_out(site: tuple[Instance, int]):
    inst, port = site
    b = Browser(port)
    status, headers, _ = b.request("/tickets?status=all")
    assert status == 303 and headers["location"] == "/login?next=%2Ftickets%3Fstatus%3Dall"
    status, headers, page = b.request("/login?next=%2Ftickets%3Fstatus%3Dall")
    assert 'name="next" value="/tickets?status=all"' in page
    assert status == 200 and 'name="csrf"' in page and "httponly" in headers["set-cookie"].lower()
    status, headers, _ = b.request("/login", {"csrf": b.csrf(page), "username": "ada", "password": PASSWORD,
                                              "next": "/tickets?status=all"})
    assert status == 303 and headers["location"] == "/tickets?status=all"   # back where the staff member was
    (cookie,) = [c.lower() for c in headers["set-cookie"].split("\n") if c.startswith("ticketd_session=")]
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie          # public_url is http here; https makes it Secure
    assert b.request("/")[1]["location"] == "/tickets"
    status, _, page = b.request("/tickets")
    assert status == 200 and "Ada Lovelace (admin)" in page
    assert '<link rel="stylesheet" href="/static/desk.css">' in page and "<style" not in page   # CSP: no inline
    status, headers, css = b.request("/static/desk.css")
    assert status == 200 and headers["content-type"].startswith("text/css") and "font:" in css
    stored = inst.query("SELECT token_hash FROM web_sessions")
    assert len(stored) == 1 and len(stored[0]["token_hash"]) == 64   # only the token's hash is kept
    # Sign-out needs the session's CSRF token; without it nothing happens.
    status, _, _ = b.request("/logout", {"csrf": "forged"})
    assert status == 403 and b.request("/tickets")[0] == 200
    status, headers, _ = b.request("/logout", {"csrf": b.csrf(page)})
    assert status == 303 and headers["location"] == "/login"
    assert inst.query("SELECT count(*) AS n FROM web_sessions")[0]["n"] == 0
    assert b.request("/tickets")[0] == 303
    # A sign-in never sends anyone to another site afterwards.
    _, _, page = b.request("/login?next=//evil.example/x")
    assert 'name="next" value="/tickets"' in page


def test_the_sign_in_form_needs_its_csrf_token(site: tuple[Instance, int]):
    _, port = site
    b = Browser(port)
    b.request("/login")                     # the form's cookie is set ...
    status, _, page = b.request("/login", {"csrf": "guessed", "username": "ada", "password": PASSWORD})
    assert status == 403 and "expired" in page
    fresh = Browser(port)                   # ... and a form posted from elsewhere has no cookie at all
    status, _, _ = fresh.request("/login", {"csrf": "x", "username": "ada", "password": PASSWORD})
    assert status == 403 and fresh.request("/tickets")[0] == 303


def test_failed_sign_ins_are_limited_and_a_turned_off_account_is_told_so(site: tuple[Instance, int]):
    inst, port = site
    b = Browser(port)
    status, _, page = b.sign_in("ada", "wrong password")
    assert status == 401 and "Wrong username or password" in page and 'value="ada"' in page
    assert b.sign_in("nobody", PASSWORD)[0] == 401
    for _ in range(4):
        assert b.sign_in("ada", "still wrong")[0] == 401
    status, _, page = b.sign_in("ada", PASSWORD)      # the right password, but the account is locked a while
    assert status == 429 and "Too many failed attempts" in page
    inst.cli("staff", "add", "bo@helpdesk.example")
    inst.cli("staff", "passwd", "bo", input=f"{PASSWORD}\n".encode())
    inst.cli("staff", "passwd", "bo", "--disable")
    status, _, page = b.sign_in("bo", PASSWORD)
    assert status == 403 and "turned off" in page
    inst.cli("staff", "passwd", "bo", "--enable")
    assert b.sign_in("bo", PASSWORD)[0] == 303
    inst.cli("staff", "passwd", "bo", "--disable")    # a session ends with its account
    assert b.request("/tickets")[0] == 303


def test_failed_sign_ins_are_limited_per_address_too(site: tuple[Instance, int]):
    _, port = site
    b = Browser(port)
    for n in range(20):                       # twenty names, one failure each: the address is the common part
        assert b.sign_in(f"guess{n}", "wrong password")[0] == 401
    status, _, page = b.sign_in("ada", PASSWORD)
    assert status == 429 and "Too many failed attempts" in page


def test_the_session_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path, database_url: str):
    inst = Instance(tmp_path, database_url=database_url)
    inst.config.write_text(inst.config.read_text().replace(
        "[web]\nlisten = false\n", '[web]\nlisten = false\npublic_url = "https://desk.example"\n'))
    inst.cli("staff", "add", "ada@helpdesk.example", "--admin")
    inst.cli("staff", "passwd", "ada", input=f"{PASSWORD}\n".encode())
    with serving(inst) as port:
        b = Browser(port)
        _, headers, page = b.request("/login")
        (login,) = [c for c in headers["set-cookie"].split("\n") if c.startswith("ticketd_login=")]
        assert "secure" in login.lower()     # a browser sends it back over https only: so does this one, by hand
        status, headers, _ = b.request("/login", {"csrf": b.csrf(page), "username": "ada", "password": PASSWORD},
                                       headers={"Cookie": login.split(";", 1)[0]})
        assert status == 303
        (cookie,) = [c.lower() for c in headers["set-cookie"].split("\n") if c.startswith("ticketd_session=")]
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_parallel_guesses_cannot_pass_the_limit_and_odd_bodies_are_refused_plainly(site: tuple[Instance, int]):
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    _, port = site
    browsers = [Browser(port) for _ in range(12)]
    pages = [b.request("/login")[2] for b in browsers]       # each with its own sign-in form and cookie

    def guess(i: int) -> int:
        b = browsers[i]
        return b.request("/login", {"csrf": b.csrf(pages[i]), "username": "ada", "password": "wrong"})[0]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(guess, range(12)))
    assert answers.count(401) <= 5 and answers.count(401) + answers.count(429) == 12, answers
    # A token that is not ASCII, a body in another charset, a body of unknown length: plain refusals.
    b = Browser(port)
    _, _, page = b.request("/login")
    assert b.request("/login", {"csrf": "\u00e9\u6f22", "username": "x", "password": "y"})[0] == 403
    for headers, body, code in (({"Content-Type": "application/x-www-form-urlencoded; charset=utf-7"},
                                 b"csrf=%2B2AA-&username=x", 415),
                                ({"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"},
                                 b"5\r\nabcde\r\n0\r\n\r\n", 411)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/login", body=body, headers=headers, encode_chunked=False)
        assert conn.getresponse().status == code
        conn.close()
