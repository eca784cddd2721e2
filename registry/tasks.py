from celery import shared_task

from . import services


@shared_task(name="registry.expire_uploads")
def expire_uploads():
    return services.uploads_expire()
