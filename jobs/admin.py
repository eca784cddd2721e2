from django.contrib import admin

from .models import BenchmarkResult, Job, WorkerHost


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "version", "target", "progress", "worker_host", "created"]
    list_filter = ["kind", "status", "target"]
    raw_id_fields = ["version", "output_version", "created_by"]
    readonly_fields = ["log", "celery_task_id", "heartbeat", "started", "finished"]


@admin.register(BenchmarkResult)
class BenchmarkResultAdmin(admin.ModelAdmin):
    list_display = ["version", "target", "batch_size", "threads", "p50_ms", "p95_ms", "throughput", "stable", "created"]
    list_filter = ["target", "stable"]
    raw_id_fields = ["job", "version"]
    exclude = ["samples"]


@admin.register(WorkerHost)
class WorkerHostAdmin(admin.ModelAdmin):
    list_display = ["hostname", "cpu_model", "cpu_count", "last_seen", "stopped"]
    readonly_fields = ["queues", "providers", "gpus", "versions"]
