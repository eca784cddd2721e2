"""Repeated failed log-ins lock the account (and, more loosely, the address) for a while, on
the log-in page and the admin's alike; the right password does not get through meanwhile."""

from datetime import timedelta

import pytest

from dashboard.models import LoginFailure
from tests.conftest import ADMIN, make_user

pytestmark = pytest.mark.django_db


def log_in(client, username, password, path="/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def test_five_failures_lock_the_account_with_a_clear_message(client, settings):
    make_user("ana", ADMIN)
    for _ in range(settings.BERTH_LOGIN_MAX_FAILURES):
        response = log_in(client, "ana", "wrong")
        assert response.status_code == 200 and "correct username and password" in response.content.decode()
    locked = log_in(client, "ana", "pw-ana")
    assert locked.status_code == 429
    assert "Too many failed log-ins" in locked.content.decode() and "15 minutes" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # The admin's log-in is throttled too.
    admin = log_in(client, "ana", "pw-ana", path="/admin/login/")
    assert admin.status_code == 200 and "_auth_user_id" not in client.session
    # Once the failures are older than the lockout, the right password works and clears them.
    LoginFailure.objects.update(at=LoginFailure.objects.first().at - timedelta(minutes=16))
    assert log_in(client, "ana", "pw-ana").status_code == 302
    assert not LoginFailure.objects.filter(username="ana").exists()


def test_other_accounts_are_not_locked_by_one_accounts_failures(client, settings):
    make_user("ana", ADMIN)
    make_user("bob", ADMIN)
    for _ in range(settings.BERTH_LOGIN_MAX_FAILURES):
        log_in(client, "ana", "wrong")
    assert log_in(client, "bob", "pw-bob").status_code == 302


def test_one_address_trying_many_accounts_is_locked(client, settings):
    settings.BERTH_LOGIN_MAX_FAILURES_PER_ADDRESS = 6
    make_user("bob", ADMIN)
    for i in range(6):
        log_in(client, f"guess-{i}", "wrong")
    assert log_in(client, "bob", "pw-bob").status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_throttled(client, settings):
    """Behind nginx every request comes from the proxy: the address limit must count the browser's
    address from X-Forwarded-For, and only when the proxy is trusted (anyone can send the header)."""
    import ipaddress

    settings.BERTH_LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    settings.BERTH_TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.0/8")]
    make_user("ana", ADMIN)
    for name in ("x1", "x2", "x3"):
        client.post(
            "/accounts/login/", {"username": name, "password": "no"}, HTTP_X_FORWARDED_FOR="203.0.113.9, 127.0.0.5"
        )
    assert set(LoginFailure.objects.values_list("address", flat=True)) == {"203.0.113.9"}
    other_browser = client.post(
        "/accounts/login/", {"username": "ana", "password": "pw-ana"}, HTTP_X_FORWARDED_FOR="198.51.100.7"
    )
    assert other_browser.status_code == 302  # the proxy's address is not locked out for everyone
    client.logout()
    assert (
        client.post(
            "/accounts/login/", {"username": "ana", "password": "pw-ana"}, HTTP_X_FORWARDED_FOR="203.0.113.9"
        ).status_code
        == 429
    )

    settings.BERTH_TRUSTED_PROXIES = []  # not trusted: the header is ignored
    LoginFailure.objects.all().delete()
    client.post("/accounts/login/", {"username": "x", "password": "no"}, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert list(LoginFailure.objects.values_list("address", flat=True)) == ["127.0.0.1"]


def test_a_limit_of_zero_turns_that_limit_off(client, settings):
    settings.BERTH_LOGIN_MAX_FAILURES = 0
    make_user("ana", ADMIN)
    for _ in range(7):
        assert log_in(client, "ana", "wrong").status_code == 200
    assert log_in(client, "ana", "pw-ana").status_code == 302
