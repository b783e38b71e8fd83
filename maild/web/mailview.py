"""A message's HTML as the desk shows it: cleaned again by an allow-list (nh3: no scripts, event handlers,
styles, forms or ``javascript:`` links), ``cid:`` images pointed at the ticket's own attachments, and remote
images left out until the staff member asks for them (they would tell the sender the mail was read)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import nh3
from markupsafe import Markup

from maild.notify import links

URL_SCHEMES = {"http", "https", "mailto", "cid"}


@dataclass
class Shown:
    html: Markup
    remote_blocked: int          # remote images left out


def display(markup: str, cid_urls: Mapping[str, str], remote: bool = False) -> Shown:
    """``markup`` (a message's sanitised HTML) for the page; ``cid_urls``: Content-ID (without <>) → the
    attachment's URL; ``remote``: keep images from other sites."""
    blocked = 0

    def attribute(element: str, name: str, value: str) -> str | None:
        nonlocal blocked
        if element == "img" and name == "src":
            if value.lower().startswith("cid:"):
                return cid_urls.get(value[4:].strip("<>"))
            if value.lower().startswith(("http:", "https:", "//")):
                if not remote:
                    blocked += 1
                    return None
                return value
            return value if value.startswith("data:image/") and not value.startswith("data:image/svg") else None
        if value.strip().lower().startswith("data:"):
            return None   # data: URLs only for images
        return value

    cleaned = nh3.clean(links.scrub(markup), url_schemes=URL_SCHEMES | {"data"}, attribute_filter=attribute,
                        link_rel="noopener noreferrer nofollow")
    return Shown(Markup(cleaned), blocked)
