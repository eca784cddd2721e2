"""Celery tasks (take an id, call jobs.services) and the worker's own reporting."""

import os
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from . import services


@shared_task(bind=True, name="jobs.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id):
    services.job_run(job_id=job_id, worker_host=self.request.hostname or "unknown")


@shared_task(name="jobs.reap")
def reap():
    return services.jobs_reap()


@shared_task(name="jobs.requeue")
def requeue():
    return services.jobs_requeue_lost()


def report_worker(hostname, queues):
    """Record this worker's hardware and queues (at start, and whenever the queues change)."""
    from .engine.hardware import host_facts

    services.worker_report(hostname=hostname, queues=queues, facts=host_facts(), pid=os.getpid())


_heartbeat_stop = threading.Event()


@worker_ready.connect
def _worker_ready(sender, **kwargs):
    hostname = sender.hostname
    report_worker(hostname, [queue.name for queue in sender.task_consumer.queues])

    def beat():
        from django.db import connection

        while not _heartbeat_stop.wait(settings.BERTH_WORKER_HEARTBEAT_SECONDS):
            try:
                services.worker_heartbeat(hostname=hostname)
            except Exception:  # a database blip must not kill the heartbeat; the next one retries
                connection.close()

    threading.Thread(target=beat, name="worker-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _worker_shutdown(sender, **kwargs):
    _heartbeat_stop.set()
    hostname = getattr(sender, "hostname", None)
    if hostname:
        services.worker_stopped(hostname=hostname)
