"""``ticketd serve``: flags override the configuration, then the daemon runs."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace

from maild.config import Listen, Settings, parse_listen


def _flag(settings: Settings, key: str, value: str | None, current: Listen | None) -> Listen | None:
    if value is None:
        return current
    if value.lower() in ("off", "none", "false", ""):
        return None
    return parse_listen(settings.source, f"--{key} (command line)", value)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from maild.app import serve

    smtp = _flag(settings, "smtp", args.smtp, settings.smtp.listen)
    lmtp = _flag(settings, "lmtp", args.lmtp, settings.lmtp.listen)
    web = _flag(settings, "web", args.web, settings.web.listen)
    settings = replace(settings, web=replace(settings.web, listen=web))
    return asyncio.run(serve(settings, smtp, lmtp))
