"""Authentication-Results (RFC 8601): did a mail server we trust verify the From domain?

A From header proves nothing by itself. When the MTA in front of ticketd checks DKIM/DMARC (OpenDKIM,
OpenDMARC, rspamd, a mailbox provider) it prepends an ``Authentication-Results`` header under its own
*authserv-id* and removes any that arrived with that id (RFC 8601 section 5). ``mail.trusted_authserv_ids``
names those servers; only the topmost header from one of them is read, so a forged copy further down,
below our server's own, is never believed.

The From domain counts as verified when that header says ``dmarc=pass`` for it, or ``dkim=pass`` with a
signing domain (``header.d``) equal to it or a parent of it (relaxed alignment). SPF alone does not count:
it vouches for the envelope sender, not for the From header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_COMMENT = re.compile(r"\([^()]*\)")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Result:
    method: str                      # dkim, dmarc, spf, arc, ...
    result: str                      # pass, fail, none, ...
    props: dict[str, str] = field(default_factory=dict)  # "header.d" → "example.com", ...


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str
    results: tuple[Result, ...]


def _strip_comments(text: str) -> str:
    for _ in range(10):  # nested comments, innermost first; bounded so hostile input cannot loop long
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    return text


def parse(value: str) -> AuthResults | None:
    """One header's value, or None when it has no authserv-id. Unknown or broken parts are skipped."""
    text = _strip_comments(" ".join(value[:8192].replace("\x00", "").split()))
    quoted: list[str] = []

    def hide(match: re.Match[str]) -> str:  # quoted strings may hold ";" or "=": set them aside
        quoted.append(match.group(1))
        return f"\x00{len(quoted) - 1}\x00"

    text = _QUOTED.sub(hide, text)
    parts = [p.strip() for p in text.split(";")]
    head = parts[0].split()
    if not head:
        return None
    results = []
    for part in parts[1:]:
        words = part.split()
        if not words or "=" not in words[0]:
            continue
        method, _, result = words[0].partition("=")
        props = {}
        for word in words[1:]:
            key, eq, val = word.partition("=")
            if eq and key:
                props[key.lower()] = re.sub(r"\x00(\d+)\x00", lambda m: quoted[int(m.group(1))], val)
        results.append(Result(method.split("/")[0].lower(), result.lower(), props))
    return AuthResults(head[0].lower().rstrip("."), tuple(results))


def _domain_of(value: str) -> str:
    value = value.strip().strip("<>").lower().rstrip(".")
    return value.rpartition("@")[2]


def _aligned(signer: str, author_domain: str) -> bool:
    # A parent domain counts only with a dot in it: d=com never vouches for every .com. Without the public
    # suffix list, a signature by a public suffix with a dot (d=co.uk) would align; no one can get one.
    if author_domain == signer:
        return bool(signer)
    return "." in signer and author_domain.endswith("." + signer)


def verified_by(headers: list[str], trusted: tuple[str, ...], author_domain: str) -> str:
    """How the author's domain was verified ("dmarc=pass at mx.example", ...), or "" when it was not.
    ``headers`` are the Authentication-Results values, topmost first."""
    if not trusted or not author_domain:
        return ""
    ids = {t.lower().rstrip(".") for t in trusted}
    author_domain = author_domain.lower()
    for value in headers:
        found = parse(value)
        if found is None or found.authserv_id not in ids:
            continue
        for res in found.results:  # the topmost header of a trusted server is the only one read
            if res.result != "pass":
                continue
            if res.method == "dmarc" and _domain_of(res.props.get("header.from", "")) == author_domain:
                return f"dmarc=pass at {found.authserv_id}"
            if res.method == "dkim":
                signer = _domain_of(res.props.get("header.d", "") or res.props.get("header.i", ""))
                if _aligned(signer, author_domain):
                    return f"dkim=pass (d={signer}) at {found.authserv_id}"
        return ""
    return ""
