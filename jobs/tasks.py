"""Celery tasks: take a job id, call jobs.services, nothing else."""

from celery import shared_task

from . import services


@shared_task(bind=True, name="jobs.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id):
    services.job_run(job_id=job_id, worker_host=self.request.hostname or "unknown")
