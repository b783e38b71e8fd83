"""Log lines an admin can grep: ``TIME LEVEL LOGGER EVENT key=value ...`` on stderr, one per event."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def _value(v: Any) -> str:
    text = str(v)
    if not text or any(c in text for c in ' "=\n\r\t') or not text.isprintable():
        quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in quoted) + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name} {record.getMessage()}"
        kv = getattr(record, "kv", None)
        if kv:
            line += " " + " ".join(f"{k}={_value(v)}" for k, v in kv.items() if v is not None)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (aiosmtpd logs every command at INFO) stays out unless asked for.
    # (APScheduler logs every job run twice, uvicorn its own start and stop: ticketd.jobs and ticketd.web
    # write one line of their own for each.)
    for noisy in ("mail.log", "aiosmtpd", "asyncio", "apscheduler", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    # mail-parser warns about every MIME subtype it has no use for ("Email content 'mixed' not handled"):
    # one line per ordinary message, nothing an admin can act on. Our own notes say what matters.
    logging.getLogger("mailparser").setLevel(logging.ERROR if level != "debug" else logging.DEBUG)
