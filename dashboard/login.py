"""Log-in throttling: after BERTH_LOGIN_MAX_FAILURES failed log-ins for one username (or
BERTH_LOGIN_MAX_FAILURES_PER_ADDRESS from one address) within BERTH_LOGIN_LOCKOUT_MINUTES,
further attempts are refused, even with the right password, until the window has passed.

The check sits in an authentication backend, so every way in (the log-in page, the admin's)
is throttled; the log-in page also says why and answers 429."""

import ipaddress
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import user_logged_in, user_login_failed
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.utils import timezone

from dashboard.models import LoginFailure


def client_address(request):
    """The address a request came from. X-Forwarded-For is believed only as far as it was written
    by BERTH_TRUSTED_PROXIES (anyone can send the header): walking it from the right, the first
    address that is not a trusted proxy is the client."""
    if request is None:
        return None
    address = request.META.get("REMOTE_ADDR") or None
    trusted = settings.BERTH_TRUSTED_PROXIES
    if not trusted or not _within(address, trusted):
        return address
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for hop in reversed(forwarded):
        if _parse(hop) is None:
            break  # a malformed entry: stop believing the header here
        if not _within(hop, trusted):
            return hop
        address = hop
    return address


def _parse(address):
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _within(address, networks):
    parsed = _parse(address or "")
    return parsed is not None and any(parsed in network for network in networks)


def locked_for(username, address, now=None):
    """Minutes left of a lockout of this username or address (0 when not locked)."""
    now = now or timezone.now()
    window = timedelta(minutes=settings.BERTH_LOGIN_LOCKOUT_MINUTES)
    recent = LoginFailure.objects.filter(at__gte=now - window)
    by_name = recent.filter(username=username or "").order_by("-at").values_list("at", flat=True)
    by_address = recent.filter(address=address).order_by("-at").values_list("at", flat=True) if address else []
    until = None
    for failures, limit in (
        (by_name, settings.BERTH_LOGIN_MAX_FAILURES),
        (by_address, settings.BERTH_LOGIN_MAX_FAILURES_PER_ADDRESS),
    ):
        if limit <= 0:  # this limit is off
            continue
        failures = list(failures[:limit])
        if len(failures) >= limit:
            # Locked until the oldest of the last `limit` failures leaves the window.
            ends = failures[limit - 1] + window
            until = max(until, ends) if until else ends
    if until is None or until <= now:
        return 0
    return max(1, round((until - now).total_seconds() / 60))


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if locked_for(username, client_address(request)):
            raise PermissionDenied("Too many failed log-ins")  # stops every backend; counts as a failure
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def _record_failure(sender, credentials, request=None, **kwargs):
    LoginFailure.objects.create(username=(credentials.get("username") or "")[:150], address=client_address(request))
    LoginFailure.objects.filter(
        at__lt=timezone.now() - timedelta(minutes=settings.BERTH_LOGIN_LOCKOUT_MINUTES)
    ).delete()


@receiver(user_logged_in)
def _forget_failures(sender, request, user, **kwargs):
    LoginFailure.objects.filter(username=user.get_username()).delete()


class ThrottledLoginView(LoginView):
    def post(self, request, *args, **kwargs):
        minutes = locked_for(request.POST.get("username"), client_address(request))
        if minutes:
            form = self.get_form()
            form.errors.clear()
            form.add_error(
                None,
                f"Too many failed log-ins for this account or from this address. Try again in "
                f"{minutes} minute{'s' if minutes != 1 else ''}.",
            )
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)
