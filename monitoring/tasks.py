"""Celery tasks for monitoring: thin, each calls one function of the monitoring services."""

from celery import shared_task


@shared_task(name="monitoring.compact")
def compact():
    from .rollups import compact_windows

    return compact_windows()


@shared_task(name="monitoring.evaluate_alerts")
def evaluate_alerts():
    from .alerts import evaluate_rules

    return evaluate_rules()


@shared_task(name="monitoring.scrape")
def scrape():
    from .scrape import scrape_due_endpoints

    return scrape_due_endpoints()


@shared_task(bind=True, name="monitoring.deliver_notification", acks_late=True, max_retries=None)
def deliver_notification(self, notification_id):
    """One attempt at a webhook or e-mail; alerts.deliver says when to try again (2, 4, 8 … s)."""
    from .alerts import deliver

    retry_in = deliver(notification_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
