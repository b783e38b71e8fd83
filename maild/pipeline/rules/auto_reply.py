"""auto_reply: mail written by a machine in answer to other mail (RFC 3834 and the de-facto headers).
It never opens a ticket and never gets an answer."""

from __future__ import annotations

from maild.outcomes import AUTO_REPLY, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.parse import ParsedMail

# Outlook/Exchange out-of-office subjects, in the languages seen most (with X-Auto-Response-Suppress).
OOF_SUBJECTS = ("automatic reply:", "auto:", "out of office", "autosvar:", "abwesenheitsnotiz:",
                "réponse automatique", "respuesta automática:", "automatische antwort:",
                "risposta automatica:", "resposta automática:")


def why_automatic(mail: ParsedMail) -> str | None:
    """The header that gives a message away as automatic, or None."""
    h = mail.header
    for value in mail.headers.get("auto-submitted", []):  # every one of them: "no" first must not hide the rest
        auto = value.split(";", 1)[0].strip().lower()
        if auto and auto != "no":
            return f"Auto-Submitted: {auto}"
    precedence = h("precedence").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond", "x-auto-reply", "x-autoresponder", "x-vacation"):
        if name in mail.headers and h(name).strip().lower() not in ("no", "false", "0"):
            return f"{name}: {h(name).strip()[:40]}"
    if h("x-fc-machinegenerated").strip().lower() == "true":
        return "X-FC-MachineGenerated: true"
    if "autoresponder" in h("x-post-messageclass").lower() or "autoresponder" in h("delivered-to").lower():
        return "autoresponder header"
    suppress = h("x-auto-response-suppress").lower()
    if ("all" in suppress or "oof" in suppress) and mail.subject.strip().lower().startswith(OOF_SUBJECTS):
        return f"X-Auto-Response-Suppress: {suppress} with an out-of-office subject"
    return None


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    reason = why_automatic(ctx.mail)
    if reason is None and ctx.null_return_path:
        reason = "null return path (MAIL FROM:<> or Return-Path: <>)"
    return Blocked(reason=AUTO_REPLY, detail=reason) if reason else None
