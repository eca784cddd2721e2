from django.db import models


class LoginFailure(models.Model):
    """A failed log-in, kept for the throttle (dashboard.login) for BERTH_LOGIN_LOCKOUT_MINUTES."""

    username = models.CharField(max_length=150, db_index=True)
    address = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return f"{self.username} from {self.address} at {self.at:%Y-%m-%d %H:%M:%S}"
