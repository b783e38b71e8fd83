"""One module per ``ticketd`` subcommand (except ``pipe``, which lives with the receivers)."""

from __future__ import annotations

import argparse
import importlib

from maild.config import Settings

MODULES = {
    "serve": "serve",
    "ingest": "ingest",
    "process": "ingest",
    "check-config": "check_config",
    "import-log": "importlog",
    "reprocess": "importlog",
    "ticket": "tickets",
    "imap": "imap",
    "ban": "ban",
    "clients": "people",
    "staff": "people",
    "outbox": "outbox",
    "migrate-db": "migrate_db",
    "jobs": "jobs",
    "feedback": "feedback",
    "report": "report",
    "predefined": "predefined",
}


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    module = importlib.import_module(f"maild.commands.{MODULES[args.command]}")
    return int(module.run(args, settings))
