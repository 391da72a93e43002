"""The celery executor's parts against the machine's Redis: the app's delivery settings, one message per waiting
piece of work (topped up, never piling up), and how `openmvsep worker` lays out its processes."""

from __future__ import annotations

import uuid

import pytest

from openmvsep.runner.celery_app import make_celery, queued_messages, top_up
from openmvsep.runner.celery_pool import CeleryWorkerPool, Slot, plan_slots
from openmvsep.service.lifecycle import waiting_work
from openmvsep.settings import Settings

from conftest import Harness, make_settings, stereo_mix, wav_bytes

BROKER = "redis://127.0.0.1:6379/14"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def test_delivery_settings():
    app = make_celery(Settings(broker_url=BROKER, celery_queue="q", broker_visibility_seconds=7200))
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.broker_transport_options["confirm_publish"]  # RabbitMQ: sent means queued
    assert conf.task_default_queue == "q" and conf.task_ignore_result
    # longer than the longest input we accept, by default
    assert Settings().broker_visibility_seconds > Settings().max_input_seconds


@pytest.fixture(params=[BROKER, RABBITMQ], ids=["redis", "rabbitmq"])
def queue_harness(request, tmp_path):
    if request.param == RABBITMQ and not _listening(5672):
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    queue = f"openmvsep-parts-{uuid.uuid4().hex[:8]}"
    h = Harness(make_settings(tmp_path, broker_url=request.param, celery_queue=queue))
    app = make_celery(h.settings)
    yield h, app, queue
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)
    h.close()


def test_top_up_sends_one_message_per_waiting_piece_and_no_more(queue_harness):
    h, app, queue = queue_harness
    tokens = [h.user(f"u{i}@example.com") for i in range(3)]
    for token in tokens:
        assert h.create(token, wav_bytes(stereo_mix(0.5)))["success"]
    assert waiting_work(h.ctx.db) == 3
    assert queued_messages(app, queue) == 0
    assert top_up(app, h.ctx.db, queue) == 3
    assert queued_messages(app, queue) == 3
    assert top_up(app, h.ctx.db, queue) == 0  # called again (another API process, the next pass): nothing more
    h.worker.run_next()  # one piece done elsewhere; its message is still queued and will find the next
    assert waiting_work(h.ctx.db) == 2 and top_up(app, h.ctx.db, queue) == 0


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_worker_processes_per_gpu_and_what_they_inherit():
    assert plan_slots(None, 2) == [Slot(0, None), Slot(1, None)]
    assert plan_slots(["0", "1"], 1) == [Slot(0, "0"), Slot(1, "1")]
    assert [s.gpu for s in plan_slots(["2", "3"], 2)] == ["2", "2", "3", "3"]
    settings = Settings(broker_url="redis://example:6379/3", celery_queue="gpu-queue")
    pool = CeleryWorkerPool(settings, plan_slots(["1"], 1))
    env = pool._env(pool.slots[0])
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["OPENMVSEP_DEVICE"] == "cuda"
    assert env["OPENMVSEP_BROKER_URL"] == "redis://example:6379/3" and env["OPENMVSEP_CELERY_QUEUE"] == "gpu-queue"
    assert env["OPENMVSEP_WORKER_NAME"] == pool.name(pool.slots[0])
    assert len({pool.name(s) for s in plan_slots(["0", "1"], 2)}) == 4
