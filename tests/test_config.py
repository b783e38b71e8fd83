"""The configuration schema: one dataclass per TOML table, whose field defaults are the only defaults;
every new key's default and checks; relative paths against the config file's folder."""

from __future__ import annotations

import json
import pickle
from dataclasses import fields
from pathlib import Path

import pytest

from maild import config
from maild.config import (
    ConfigError,
    Listen,
    NotificationSettings,
    OutboundSettings,
    Settings,
    WebSettings,
)
from tests.helpers import ROOT

DEPARTMENTS = '\n[[departments]]\nname = "Support"\naddresses = ["support@helpdesk.example"]\n'
SECTIONS = [f for f in fields(Settings) if f.metadata.get("section")]


def load_text(tmp_path: Path, text: str) -> Settings:
    conf = tmp_path / "ticketd.toml"
    conf.write_text(text + DEPARTMENTS)
    return config.load(conf)


def test_defaults_live_in_the_dataclasses(tmp_path: Path):
    """A file with only departments gets exactly the dataclasses' defaults: the reader has none of its own."""
    settings = load_text(tmp_path, "")
    for f in SECTIONS:
        assert getattr(settings, f.name) == f.default_factory(), f.name  # type: ignore[misc]
    assert settings.state_dir == tmp_path / "var"


def test_shipped_config_shows_the_defaults():
    """ticketd.toml writes out the defaults (README says so): it must not drift from the code."""
    settings = config.load(ROOT / "ticketd.toml")
    for f in SECTIONS:
        assert getattr(settings, f.name) == f.default_factory(), f.name  # type: ignore[misc]


def test_readme_documents_every_key():
    readme = (ROOT / "README.md").read_text()
    for f in SECTIONS:
        for key in fields(f.default_factory):  # type: ignore[arg-type]
            name = f"[{f.name}.{key.name}]" if key.name == "rules" else f"{f.name}.{key.name}"
            assert f"`{name}`" in readme, name


def test_new_keys_defaults(tmp_path: Path):
    s = load_text(tmp_path, "")
    assert s.web == WebSettings(Listen("127.0.0.1", 8025), "http://127.0.0.1:8025")
    o = s.outbound
    assert (o.transport, o.host, o.port, o.security, o.ca_file, o.tls_verify, o.username, o.password_file) == (
        "maildir", "localhost", 0, "starttls", None, True, "", None)
    assert (o.timeout, o.connections, o.retry_hours, o.max_backoff_seconds, o.attach_max, o.from_name) == (
        30, 2, 48, 3600, 10 * 1024 * 1024, "")
    assert o.effective_port == 25 and o.password() == ""
    n = s.notifications
    assert (n.templates, n.auto_per_hour, n.bounce_hold_days, n.rules) == (None, 10, 30, {})
    assert s.sent_dir == tmp_path / "var" / "sent" and s.secret_path == tmp_path / "var" / "secret.key"


@pytest.mark.parametrize(("security", "port", "effective"),
                         [("starttls", 0, 25), ("none", 0, 25), ("tls", 0, 465), ("tls", 2465, 2465)])
def test_effective_port(security, port, effective):
    assert OutboundSettings(security=security, port=port).effective_port == effective


def test_values_are_read_and_normalised(tmp_path: Path):
    s = load_text(tmp_path, """
[web]
public_url = "https://help.example.com/desk/"
[outbound]
transport = "smtp"
host = "smtp.example.com"
security = "tls"
attach_max = "2MB"
from_name = " Example Helpdesk "
[notifications]
auto_per_hour = 0
bounce_hold_days = 7
""")
    assert s.web.public_url == "https://help.example.com/desk"
    assert s.outbound.effective_port == 465 and s.outbound.attach_max == 2 * 1024 * 1024
    assert s.outbound.from_name == "Example Helpdesk"
    assert (s.notifications.auto_per_hour, s.notifications.bounce_hold_days) == (0, 7)


BAD = [
    ('[web]\npublic_url = "ftp://help.example.com"', "web.public_url", "http:// or https://"),
    ('[web]\npublic_url = "https://"', "web.public_url", "with a host"),
    ('[web]\npublic_url = "https://help.example.com/?x=1"', "web.public_url", "no query"),
    ('[web]\npublic_url = "help.example.com"', "web.public_url", "http:// or https://"),
    ('[outbound]\ntransport = "sendmail"', "outbound.transport", "maildir, smtp"),
    ('[outbound]\nhost = "smtp example"', "outbound.host", "host name"),
    ("[outbound]\nport = 70000", "outbound.port", "0-65535"),
    ('[outbound]\nport = "25"', "outbound.port", "expected int"),
    ('[outbound]\nsecurity = "ssl"', "outbound.security", "starttls, tls, none"),
    ('[outbound]\nca_file = "missing.pem"', "outbound.ca_file", "no such file"),
    ('[outbound]\ntls_verify = "yes"', "outbound.tls_verify", "expected bool"),
    ("[outbound]\nusername = 42", "outbound.username", "expected str"),
    ('[outbound]\nusername = "u"', "outbound.password_file", "required when username is set"),
    ('[outbound]\npassword_file = "pw"', "outbound.password_file", "without username"),
    ('[outbound]\nhost = "smtp.example.com"\nsecurity = "none"\nusername = "u"\npassword_file = "pw"',
     "outbound.security", "clear text"),
    ("[outbound]\ntimeout = 0", "outbound.timeout", "1-600"),
    ("[outbound]\ntimeout = 601", "outbound.timeout", "1-600"),
    ("[outbound]\nconnections = 33", "outbound.connections", "1-32"),
    ("[outbound]\nretry_hours = 0", "outbound.retry_hours", "1-720"),
    ("[outbound]\nmax_backoff_seconds = 9", "outbound.max_backoff_seconds", "10-86400"),
    ('[outbound]\nattach_max = "lots"', "outbound.attach_max", "size"),
    ('[outbound]\nfrom_name = "Help\\r\\nBcc: x@evil.example"', "outbound.from_name", "one line"),
    ("[outbound]\nrelay = 1", "outbound.relay", "unknown setting"),
    ('[notifications]\ntemplates = "no-such-dir"', "notifications.templates", "no such directory"),
    ("[notifications]\nauto_per_hour = -1", "notifications.auto_per_hour", "0-10000"),
    ("[notifications]\nbounce_hold_days = 0", "notifications.bounce_hold_days", "1-3650"),
    ("[notifications]\nrules = 1", "notifications.rules", "expected dict"),
    ('[notifications.rules]\nticket_eaten = ["watchers"]', "notifications.rules.ticket_eaten",
     "the events are ticket_opened, client_reply"),
    ('[notifications.rules]\nclosed = ["everyone"]', "notifications.rules.closed", "the groups are watchers"),
    ('[notifications.rules]\nclosed = "watchers"', "notifications.rules.closed", "expected a list"),
    ('[notifications.rules]\nnote_added = ["watchers", "requester"]', "notifications.rules.note_added",
     "private to staff"),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD, ids=[f"{k}:{t.split('=')[-1].strip()[:20]}" for t, k, _ in BAD])
def test_bad_value_names_its_key(tmp_path: Path, text, key, words):
    (tmp_path / "pw").write_text("secret\n")
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert err.value.key == key and words in err.value.problem, str(err.value)
    assert str(tmp_path / "ticketd.toml") in str(err.value)


def test_rule_overrides_accepted(tmp_path: Path):
    from maild.desk.events import EventKind
    from maild.notify.rules import DEFAULT_RULES, rules

    s = load_text(tmp_path, '[notifications.rules]\nclient_reply = ["watchers", "assigned", "watchers"]\nclosed = []\n')
    assert s.notifications.rules == {"client_reply": ("watchers", "assigned"), "closed": ()}
    table = rules(s.notifications.rules)
    assert table[EventKind.CLIENT_REPLY] == ("watchers", "assigned") and table[EventKind.CLOSED] == ()
    assert table[EventKind.ADMIN_REPLY] == DEFAULT_RULES[EventKind.ADMIN_REPLY]


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    etc = tmp_path / "etc"
    (etc / "secrets").mkdir(parents=True)
    (etc / "mail-templates").mkdir()
    (etc / "secrets" / "relay.secret").write_text("  s3cret\n")
    (etc / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    conf = etc / "ticketd.toml"
    conf.write_text('[outbound]\ntransport = "smtp"\nusername = "ticketd"\npassword_file = "secrets/relay.secret"\n'
                    'ca_file = "ca.pem"\n[notifications]\ntemplates = "mail-templates"\n' + DEPARTMENTS)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = config.load("../etc/ticketd.toml")
    assert s.outbound.password_file == etc / "secrets" / "relay.secret"
    assert s.outbound.ca_file == etc / "ca.pem" and s.notifications.templates == etc / "mail-templates"
    assert s.outbound.password() == "s3cret"
    (etc / "secrets" / "relay.secret").write_text("rotated\n")  # read at each call
    assert s.outbound.password() == "rotated"
    shown = json.dumps(s.as_dict())
    assert "rotated" not in shown and str(etc / "secrets" / "relay.secret") in shown


def test_settings_survive_pickling(tmp_path: Path):
    """``serve`` hands the settings to the worker process (spawn), so they must pickle."""
    s = load_text(tmp_path, '[notifications.rules]\nclosed = ["watchers"]\n')
    assert pickle.loads(pickle.dumps(s)) == s


def test_section_defaults_are_not_shared_mutable_state():
    assert NotificationSettings().rules is not NotificationSettings().rules
