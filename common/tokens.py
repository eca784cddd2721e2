"""API tokens: issued, listed, revoked and checked here. The key is shown once; Berth keeps
its sha256 (like endpoint tokens), its first characters to recognise it, and when it was last used.

Clients send ``Authorization: Token <key>``."""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from . import audit
from .errors import BerthError, NotFound
from .models import ApiToken

Scope = ApiToken.Scope
# Keys start with "berth_" so that secret scanners can spot them (and never with "-", which a
# command line would take for an option).
KEY_START = "berth_"
PREFIX_LENGTH = len(KEY_START) + 6
MAX_EXPIRY_DAYS = 3650
# last_used is written at most this often per token, so a busy CI does not write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_hash(key):
    return hashlib.sha256(key.encode()).hexdigest()


def issue(user, *, name, scope=Scope.FULL, expires_days=None, actor=None):
    """(token row, key): a new token for ``user``; ``actor`` (default ``user``) is who asked."""
    name = (name or "").strip()
    if not name:
        raise BerthError("Give the token a name that says what uses it, e.g. 'CI: digits repo'.", field="name")
    if len(name) > 100:
        raise BerthError("A token name has at most 100 characters.", field="name")
    if scope not in Scope.values:
        raise BerthError(f"Scope must be one of {', '.join(Scope.values)}.", field="scope")
    expires = None
    if expires_days is not None:
        if not 1 <= int(expires_days) <= MAX_EXPIRY_DAYS:
            raise BerthError(f"A token expires after 1 to {MAX_EXPIRY_DAYS} days (or never).", field="expires_days")
        expires = timezone.now() + timedelta(days=int(expires_days))
    key = KEY_START + secrets.token_urlsafe(30)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=key[:PREFIX_LENGTH], key_hash=key_hash(key), scope=scope, expires=expires
        )
        audit.record(
            audit.Action.API_TOKEN,
            user.get_username(),
            user=actor or user,
            details={"op": "created", "name": name, "prefix": token.prefix, "scope": scope},
        )
    return token, key


def revoke(token, *, actor):
    """Revoke ``token`` (idempotent); the change is audited."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked is None:
            token.revoked = timezone.now()
            token.save(update_fields=["revoked"])
            audit.record(
                audit.Action.API_TOKEN,
                token.user.get_username(),
                user=actor,
                details={"op": "revoked", "name": token.name, "prefix": token.prefix, "scope": token.scope},
            )
    return token


def active(tokens):
    return tokens.filter(revoked__isnull=True).exclude(expires__lte=timezone.now())


def is_active(token):
    return token.revoked is None and (token.expires is None or token.expires > timezone.now())


def tokens_for(user, *, all_users=False):
    found = ApiToken.objects.select_related("user")
    return found if all_users else found.filter(user=user)


def token_get(token_id, *, user, all_users=False):
    found = tokens_for(user, all_users=all_users).filter(pk=token_id).first()
    if found is None:
        raise NotFound(f"You have no API token with id {token_id}.")
    return found


def authenticate(key):
    """The live token for ``key``, or AuthenticationFailed saying why not."""
    token = ApiToken.objects.select_related("user").filter(key_hash=key_hash(key)).first()
    if token is None:
        raise AuthenticationFailed("This API token is not valid. Create one on your API tokens page.")
    if token.revoked is not None:
        raise AuthenticationFailed(f"This API token ({token.prefix}…, {token.name!r}) was revoked.")
    now = timezone.now()
    if token.expires is not None and token.expires <= now:
        raise AuthenticationFailed(
            f"This API token ({token.prefix}…, {token.name!r}) expired on {token.expires:%Y-%m-%d}. Create a new one."
        )
    if not token.user.is_active:
        raise AuthenticationFailed("The user of this API token is inactive.")
    if token.last_used is None or now - token.last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token
