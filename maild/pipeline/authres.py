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

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Result:
    method: str                      # dkim, dmarc, spf, arc, ...
    result: str                      # pass, fail, none, ...
    props: dict[str, str] = field(default_factory=dict)  # "header.d" → "example.com", ...


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str
    results: tuple[Result, ...]


def _lex(text: str) -> list[tuple[str, bool]] | None:
    """Tokens of a header value as (text, quoted): words, ``;`` and ``=`` apart, comments dropped, quoted
    strings whole. One left-to-right pass that honours backslash escapes, nested comments (RFC 5322 CFWS)
    and quoted strings inside comments, so that nothing inside a comment or a quoted string can pose as a
    result. None when a quote or a comment is left open: such a header proves nothing."""
    tokens: list[tuple[str, bool]] = []
    word: list[str] = []
    i, n = 0, len(text)

    def flush() -> None:
        if word:
            tokens.append(("".join(word), False))
            word.clear()

    while i < n:
        ch = text[i]
        if ch == "(":
            flush()
            depth = 1
            i += 1
            while i < n and depth:
                c = text[i]
                if c == "\\":
                    i += 1
                elif c == '"':
                    # Not special in a comment by RFC 5322, but MTAs quote the sender's local part there
                    # unescaped ("a);dkim=pass;(b"@evil): a quote must close before the comment can.
                    close = text.find('"', i + 1)
                    while close != -1 and text[close - 1] == "\\":
                        close = text.find('"', close + 1)
                    if close == -1:
                        return None
                    i = close
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                i += 1
            if depth:
                return None
            continue
        if ch == '"':
            flush()
            value: list[str] = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            if i >= n:
                return None
            tokens.append(("".join(value), True))
            i += 1
            continue
        if ch in ";=":
            flush()
            tokens.append((ch, False))
        elif ch.isspace():
            flush()
        else:
            word.append(ch)
        i += 1
    flush()
    return tokens


def _words(group: list[tuple[str, bool]]) -> list[str]:
    """Join ``key = value`` (spaces allowed around ``=``) into one ``key=value`` word."""
    out: list[str] = []
    i = 0
    while i < len(group):
        text, quoted = group[i]
        if text == "=" and not quoted and out and i + 1 < len(group):
            out[-1] = f"{out[-1]}={group[i + 1][0]}"
            i += 2
            continue
        out.append(text if quoted or text != "=" else "")
        i += 1
    return [w for w in out if w]


def parse(value: str) -> AuthResults | None:
    """One header's value, or None when it has no authserv-id or is malformed (an open quote or comment).
    Unknown parts are skipped."""
    if len(value) > 16384:
        return None
    tokens = _lex(value.replace("\x00", ""))
    if tokens is None:
        return None
    groups: list[list[tuple[str, bool]]] = [[]]
    for token in tokens:
        if token == (";", False):
            groups.append([])
        else:
            groups[-1].append(token)
    head = _words(groups[0])
    if not head or "=" in head[0]:
        return None  # no authserv-id (Microsoft 365 writes none): not a header we could trust
    results = []
    for group in groups[1:]:
        words = _words(group)
        if not words or "=" not in words[0]:
            continue
        method, _, result = words[0].partition("=")
        props = {}
        for word in words[1:]:
            key, eq, val = word.partition("=")
            if eq and key:
                props[key.lower()] = val
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
        if found is None:
            # Unreadable. If it names a trusted server it may well be that server's own (with the sender's
            # words in it): reading on would let a forged copy below it count. It ends the search.
            if any(i in value.split(";", 1)[0].lower() for i in ids):
                return ""
            continue
        if found.authserv_id not in ids:
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
