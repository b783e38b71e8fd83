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
                files: list[tuple[str, str, bytes]] | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], str]:
        """GET, or POST ``form`` (values: a string or a list of strings); ``files``: (field, name, bytes)
        sent as multipart/form-data."""
        status, headers, body = self.raw(path, form, files, headers)
        return status, headers, body.decode("utf-8", errors="replace")

    def raw(self, path: str, form: dict[str, Any] | None = None, files: list[tuple[str, str, bytes]] | None = None,
            extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data, headers = None, dict(extra or {})
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


def form_values(page: str, action: str) -> dict[str, str]:
    """The values a browser would send unchanged from the form posting to ``action``: text inputs, hidden
    inputs, the selected option of each select, checked boxes (the first value of a repeated name)."""
    import html

    found = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
    assert found, f"no form posting to {action}"
    body, out = found.group(1), {}
    for tag in re.finditer(r"<input\b([^>]*)>", body):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', tag.group(1)))
        kind = attrs.get("type", "text")
        if "name" not in attrs or kind in ("file", "submit") or (kind in ("checkbox", "radio")
                                                                and "checked" not in tag.group(1)):
            continue
        out.setdefault(attrs["name"], html.unescape(attrs.get("value", "")))
    for select in re.finditer(r'<select[^>]*name="(\w+)"[^>]*>(.*?)</select>', body, re.S):
        options = re.findall(r"<option([^>]*)>([^<]*)", select.group(2))
        chosen = next((o for o in options if "selected" in o[0]), options[0] if options else None)
        if chosen is not None:
            value = re.search(r'value="([^"]*)"', chosen[0])
            out[select.group(1)] = html.unescape(value.group(1) if value else chosen[1])
    return out
