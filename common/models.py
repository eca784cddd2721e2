from django.db import models


class AuditEvent(models.Model):
    """Who did what, when: uploads, registrations, alias moves (and gate overrides), endpoints,
    deployments, rollbacks and token changes. Written in the transaction of the change it
    records (common.audit.record), so a change that rolls back leaves no event."""

    class Action(models.TextChoices):
        UPLOAD = "upload"
        REGISTER = "register"
        ALIAS_SET = "alias_set"
        ALIAS_REMOVE = "alias_remove"
        GATE_OVERRIDE = "gate_override"
        ENDPOINT_CREATE = "endpoint_create"
        DEPLOY = "deploy"
        ROLLBACK = "rollback"
        ENDPOINT_TOKEN = "endpoint_token"
        ENDPOINT_BATCHING = "endpoint_batching", "endpoint batching"
        API_TOKEN = "api_token"
        INTEGRITY = "integrity", "artifact integrity failure"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(max_length=150, blank=True, help_text="Kept if the user is deleted")
    action = models.CharField(max_length=20, choices=Action.choices, db_index=True)
    target = models.CharField(max_length=300, help_text="What it was done to: model:version, endpoint, …")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "dashboard_auditevent"  # made by the dashboard app before it moved here
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.target}"


class ApiToken(models.Model):
    """A user's API token for scripts and CI. Only its sha256 is stored; the key is shown once.
    A token acts with its user's role, narrowed by its scope (common.access.SCOPES)."""

    class Scope(models.TextChoices):
        FULL = "full", "full (everything the user's role allows)"
        REGISTER = "register", "register (read, upload and register versions: for CI)"
        READ = "read", "read-only"

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'CI: digits repo'")
    prefix = models.CharField(max_length=16, help_text="The key's first characters, to recognise it")
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.FULL)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        db_table = "dashboard_apitoken"  # made by the dashboard app before it moved here
        ordering = ["-created", "-id"]

    def __str__(self):
        return f"{self.user} {self.name} ({self.prefix}…, {self.scope})"
