"""The celery executor's broker side: the Celery app and keeping one message queued per piece of waiting work.

The database stays the record (state, attempts, leases); a message carries no job, only "there is work".
The worker that takes one claims the best waiting piece from the database, so plan priority holds across
all workers whatever order the broker delivers in, and a message that finds nothing to do costs one query.
A lost message (a broker restarted without persistence, a worker killed) loses nothing: `top_up` compares the
waiting work with the queued messages and sends what is missing; API processes call it every few seconds.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from openmvsep.service.lifecycle import waiting_work
from openmvsep.settings import Settings
from openmvsep.store.db import Database

TASK = "openmvsep.work"


def make_celery(settings: Settings) -> Celery:
    app = Celery("openmvsep", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_queues=[Queue(settings.celery_queue, routing_key=settings.celery_queue)],
        # A message is acknowledged when its work is done, so a worker that dies holding it hands it back;
        # each worker process holds one message at a time (the work is long, a fair share matters).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Redis re-sends an unacknowledged message after this long: it must outlast the longest job.
        # RabbitMQ confirms each publish, so a sent message is in the queue (and counted by `queued_messages`)
        # before `top_up` returns; without it a second top-up could count too few and send the same again.
        broker_transport_options={
            "visibility_timeout": int(settings.broker_visibility_seconds),
            "confirm_publish": True,
        },
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def queued_messages(app: Celery, queue: str) -> int:
    """Messages waiting in the broker (not those a worker holds)."""
    with app.connection_for_read() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except conn.channel_errors:  # not declared yet: no worker has started and nothing was sent
            return 0


def top_up(app: Celery, db: Database, queue: str) -> int:
    """Send one message for each piece of waiting work that has none; returns how many were sent."""
    missing = waiting_work(db) - queued_messages(app, queue)
    if missing <= 0:
        return 0
    with app.producer_or_acquire() as producer:
        for _ in range(missing):
            app.send_task(TASK, queue=queue, producer=producer)
    return missing
