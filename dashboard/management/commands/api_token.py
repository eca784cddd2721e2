"""Issue an API token from the shell (for a CI service account, say); prints the key once."""

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from common import tokens
from common.errors import BerthError
from common.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (Berth keeps only its hash)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created with manage.py api_token")
        parser.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.FULL)
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args, username, name, scope, expires_days, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        try:
            _, key = tokens.issue(user, name=name, scope=scope, expires_days=expires_days)
        except BerthError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(key)
