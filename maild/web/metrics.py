"""``GET /metrics`` in Prometheus' text format (prometheus-client): messages by source and outcome, the spool
and outbox backlogs and their age, delivery attempts and latency, the IMAP accounts' state, and the web
view's request latency. Open without a staff session only to the addresses of ``[web] metrics_allow``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from maild.clock import parse
from maild.outcomes import OUTCOME_NAMES
from maild.store import imap, outbox, stats
from maild.web.auth import Section, within

if TYPE_CHECKING:
    from maild.app import App

REQUESTS = CollectorRegistry(auto_describe=True)   # this process's web requests (the tables hold the rest)
REQUEST_SECONDS = Histogram("ticketd_web_request_seconds", "Web view requests by route and method, server time",
                            ["route", "method"], registry=REQUESTS,
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
ROUTES = ("tickets", "import-log", "outbox", "predefined", "reports", "login", "logout", "healthz", "metrics", "static",
          "c", "client")
UP_STATES = ("connected", "idle")


def observe(path: str, method: str, seconds: float) -> None:
    """One request's server time, by its first path segment (a fixed set: never a ticket number)."""
    first = path.strip("/").split("/", 1)[0]
    REQUEST_SECONDS.labels(first if first in ROUTES else ("home" if not first else "other"), method).observe(seconds)


class _Figures:
    """Families computed before the scrape (the database is asynchronous; collectors are not)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def families(app: App) -> list[Metric]:
    assert app.db is not None
    db, now = app.db, app.clock.now()

    def age(stamp: str | None) -> float:
        return max(0.0, (now - parse(stamp)).total_seconds()) if stamp else 0.0

    out: list[Metric] = []
    messages = CounterMetricFamily("ticketd_messages", "Messages processed, by source and outcome",
                                   labels=["source", "outcome"])
    counts = await stats.messages_by_source_outcome(db)
    for (source, outcome), n in sorted(counts.items()):
        messages.add_metric([source, outcome], n)
    for name in OUTCOME_NAMES:   # every outcome present, so that rates and alerts have a series from the start
        if not any(o == name for _, o in counts):
            messages.add_metric(["smtp", name], 0)
    out.append(messages)
    waiting, oldest = await stats.spool(db)
    out.append(GaugeMetricFamily("ticketd_spool_backlog", "Messages stored but not processed yet", value=waiting))
    out.append(GaugeMetricFamily("ticketd_spool_oldest_age_seconds", "Age of the oldest unprocessed message",
                                 value=age(oldest)))
    states = GaugeMetricFamily("ticketd_outbox_mails", "Outbox mails by state", labels=["state"])
    for state, n in (await outbox.counts(db)).items():
        states.add_metric([state], n)
    out.append(states)
    out.append(GaugeMetricFamily("ticketd_outbox_oldest_queued_age_seconds", "Age of the oldest mail still queued",
                                 value=age(await stats.outbox_oldest_queued(db))))
    out.append(CounterMetricFamily("ticketd_outbox_delivery_attempts", "Delivery attempts made",
                                   value=await stats.outbox_attempts(db)))
    latencies = [max(0.0, (parse(sent) - parse(queued)).total_seconds())
                 for queued, sent in await stats.recent_deliveries(db)]
    latency = GaugeMetricFamily("ticketd_outbox_delivery_latency_seconds",
                                "From queued to accepted by the relay, over the latest 1000 mails sent",
                                labels=["quantile"])
    for q in (0.5, 0.95, 0.99):
        latency.add_metric([str(q)], _quantile(latencies, q))
    out.append(latency)
    up = GaugeMetricFamily("ticketd_imap_account_up", "IMAP account connected (1) or not (0)", labels=["account"])
    states_now = GaugeMetricFamily("ticketd_imap_account_state", "IMAP account's state (1 for the present one)",
                              labels=["account", "state"])
    for row in await imap.status_rows(db):
        up.add_metric([row["account"]], 1 if row["state"] in UP_STATES else 0)
        states_now.add_metric([row["account"], row["state"]], 1)
    out += [up, states_now]
    return out


class MetricsPage(Section):
    async def metrics(self, request: Request) -> Response:
        if not within(self.auth.address(request), self.app.settings.web.metrics_allow):
            session = await self.auth.current(request)
            if session is None or not session.member.is_admin:
                return Response("metrics are open to the addresses of [web] metrics_allow, or with an admin's"
                                " session\n", status_code=403, media_type="text/plain")
        began = time.perf_counter()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Figures(await families(self.app)))
        scrape = GaugeMetricFamily("ticketd_metrics_scrape_seconds", "Time taken to read the figures",
                                   value=time.perf_counter() - began)
        body = generate_latest(registry) + generate_latest(REQUESTS) + _text([scrape])
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})


def _text(extra: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(extra))
    return generate_latest(registry)
