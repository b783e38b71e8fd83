"""``ticketd check-config``: the configuration was already loaded and checked; show the result."""

from __future__ import annotations

import argparse

from maild.commands.output import print_json
from maild.config import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    print_json(settings.as_dict())
    return 0
