from django.contrib import admin

from .models import Alias, AliasEvent, Dataset, HardwareTarget, Model, ModelVersion, PromotionGate, Upload


class VersionInline(admin.TabularInline):
    model = ModelVersion
    fields = ["version", "status", "format", "size_bytes", "parent", "created"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "owner", "created"]
    search_fields = ["name", "description"]
    inlines = [VersionInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["model", "version", "status", "format", "size_bytes", "parent", "created"]
    list_filter = ["status", "format"]
    search_fields = ["model__name", "version", "sha256"]
    raw_id_fields = ["parent", "model", "created_by"]
    # Bytes and their identity are immutable once registered.
    readonly_fields = ["artifact", "sha256", "size_bytes", "format", "created"]


@admin.register(Alias)
class AliasAdmin(admin.ModelAdmin):
    list_display = ["model", "name", "version", "updated_by", "updated"]
    raw_id_fields = ["version"]


@admin.register(PromotionGate)
class PromotionGateAdmin(admin.ModelAdmin):
    list_display = ["model", "kind", "threshold", "target", "batch_size", "created_by", "created"]
    list_filter = ["kind", "target"]
    search_fields = ["model__name"]
    raw_id_fields = ["model", "created_by"]


@admin.register(AliasEvent)
class AliasEventAdmin(admin.ModelAdmin):
    """The alias log is read-only: it records what happened. (Deleting stays possible so that a
    model can be deleted with its log.)"""

    list_display = ["created", "model", "alias", "action", "from_label", "to_label", "user", "overridden"]
    list_filter = ["action", "overridden", "alias"]
    search_fields = ["model__name", "alias", "from_label", "to_label", "justification"]
    date_hierarchy = "created"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["model", "name", "kind", "rows", "created"]
    list_filter = ["kind"]
    readonly_fields = ["file", "sha256", "size_bytes", "rows", "arrays"]


@admin.register(HardwareTarget)
class HardwareTargetAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "device", "execution_provider", "active"]


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["id", "filename", "size", "offset", "status", "created_by", "updated"]
    list_filter = ["status"]
    readonly_fields = ["size", "offset", "expected_sha256", "sha256"]
