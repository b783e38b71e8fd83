"""A small HTTP client for the web view's tests: cookies kept, redirects not followed (each answer as it
came), forms posted as urlencoded or multipart (with files)."""

from __future__ import annotations

import http.cookiejar
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

PASSWORD = "a long enough password"


class Browser:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, form: dict[str, Any] | None = None,
                files: list[tuple[str, str, bytes]] | None = None) -> tuple[int, dict[str, str], str]:
        """GET, or POST ``form`` (values: a string or a list of strings); ``files``: (field, name, bytes)
        sent as multipart/form-data."""
        status, headers, body = self.raw(path, form, files)
        return status, headers, body.decode("utf-8", errors="replace")

    def raw(self, path: str, form: dict[str, Any] | None = None,
            files: list[tuple[str, str, bytes]] | None = None) -> tuple[int, dict[str, str], bytes]:
        data, headers = None, {}
        if files is not None:
            data, ctype = multipart(form or {}, files)
            headers["Content-Type"] = ctype
        elif form is not None:
            data = urllib.parse.urlencode(form, doseq=True).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers)

        def flat(h: Any) -> dict[str, str]:
            out = {k.lower(): v for k, v in h.items()}
            out["set-cookie"] = "\n".join(h.get_all("set-cookie") or [])
            return out

        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, flat(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, flat(err.headers), err.read()

    @staticmethod
    def csrf(page: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page[:3000]
        return found.group(1)

    def sign_in(self, username: str, password: str = PASSWORD) -> tuple[int, dict[str, str], str]:
        _, _, page = self.request("/login")
        return self.request("/login", {"csrf": self.csrf(page), "username": username, "password": password})


def multipart(form: dict[str, Any], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "----ticketd" + secrets.token_hex(8)
    out = []
    for key, value in form.items():
        for v in value if isinstance(value, list) else [value]:
            out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{v}\r\n'.encode())
    for field, name, data in files:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                   f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
