from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "version", "target", "progress", "worker_host", "created"]
    list_filter = ["kind", "status", "target"]
    raw_id_fields = ["version", "output_version", "created_by"]
    readonly_fields = ["log", "celery_task_id", "heartbeat", "started", "finished"]
