"""`/metrics` in Prometheus's text format: off unless `OPENMVSEP_METRICS_ENABLED`, behind a bearer token when
`OPENMVSEP_METRICS_TOKEN` is set.

The queue, times, attempts, heartbeats and webhook outbox are read from the database on each scrape
(service/readings.py), so they are the same on every replica. Failed logins are counted here, as answers of this
process (a counter per process is what Prometheus expects: it sums replicas itself). The exposition comes from
prometheus_client, the reference implementation of the format.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from openmvsep.api.context import AppServices, ctx
from openmvsep.api.responses import error
from openmvsep.service.readings import Readings
from openmvsep.store.status import WebhookStatus

LOGIN_PATH = "/api/app/login"


class ReadingsCollector(Collector):
    def __init__(self, services: AppServices):
        self.services = services  # its readings are built on the first scrape, not with the app

    def collect(self) -> Iterator[Metric]:
        r: Readings = self.services.readings.read()
        jobs = GaugeMetricFamily("openmvsep_jobs", "Separation jobs by status", labels=["status"])
        for status, count in sorted(r.jobs_by_status.items()):
            jobs.add_metric([status], count)
        yield jobs
        depth = GaugeMetricFamily("openmvsep_queue_depth", "Jobs waiting, by queue (plan)", labels=["plan"])
        oldest = GaugeMetricFamily(
            "openmvsep_queue_oldest_wait_seconds", "Age of the oldest waiting job, by queue", labels=["plan"]
        )
        for plan in ("premium", "registered", "unregistered"):
            depth.add_metric([plan], r.waiting_by_plan.get(plan, 0))
            oldest.add_metric([plan], r.oldest_wait_seconds_by_plan.get(plan, 0.0))
        yield depth
        yield oldest
        for name, text, values, count in (
            ("wait", "Time from create to start, jobs started in the last hour", r.wait_seconds, r.recent_started),
            ("run", "Time from start to done, jobs finished in the last hour", r.run_seconds, r.recent_finished),
        ):
            family = GaugeMetricFamily(f"openmvsep_job_{name}_seconds", text, labels=["quantile"])
            for q, seconds in sorted(values.items()):
                family.add_metric([f"{q:g}"], seconds)
            yield family
            yield GaugeMetricFamily(f"openmvsep_job_{name}_recent_jobs", f"Jobs counted in {name} times", value=count)
        attempts = GaugeMetricFamily(
            "openmvsep_work_items", "Work items waiting or running, by times claimed", labels=["attempts"]
        )
        for n, count in sorted(r.items_by_attempts.items()):
            attempts.add_metric([str(n)], count)
        yield attempts
        heartbeats = GaugeMetricFamily(
            "openmvsep_worker_heartbeat_age_seconds", "Seconds since a busy worker's last heartbeat", labels=["worker"]
        )
        for worker, age in sorted(r.heartbeat_age_by_worker.items()):
            heartbeats.add_metric([worker], age)
        yield heartbeats
        webhooks = GaugeMetricFamily("openmvsep_webhook_events", "Webhook outbox events by status", labels=["status"])
        for status in WebhookStatus:
            webhooks.add_metric([status.value], r.webhooks_by_status.get(status, 0))
        yield webhooks
        yield GaugeMetricFamily(
            "openmvsep_webhook_events_retrying",
            "Webhook events due again after a failed attempt",
            value=r.webhooks_retrying,
        )


class Metrics:
    """One app's registry: the database readings and this process's counters."""

    def __init__(self, services: AppServices):
        self.registry = CollectorRegistry()
        self.registry.register(ReadingsCollector(services))
        self.login_failures = Counter(
            "openmvsep_login_failures", "Refused logins answered by this process", registry=self.registry
        )


class CountLoginFailures:
    """ASGI middleware: every refused login (any 4xx or 5xx answer to the login route) counts once."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != LOGIN_PATH:
            return await self.app(scope, receive, send)

        async def counting(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.metrics.login_failures.inc()
            await send(message)

        await self.app(scope, receive, counting)


def _authorised(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def metrics(request: Request) -> Response:
    settings = ctx(request).settings
    if not settings.metrics_enabled:
        return error("Not found", 404)
    if settings.metrics_token and not _authorised(request, settings.metrics_token):
        return error("Unauthorized", 401, {"WWW-Authenticate": "Bearer"})
    registry = request.app.state.metrics.registry
    body = await run_in_threadpool(generate_latest, registry)  # reads the database
    return Response(body, media_type=CONTENT_TYPE_LATEST)
