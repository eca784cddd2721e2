from django.core.management.base import BaseCommand

from dashboard.demo import DEMO_PASSWORD, DEMO_USERS, load_demo


class Command(BaseCommand):
    help = "Load demo data (users, the cpu target, a digits classifier with datasets). Idempotent."

    def handle(self, *args, **options):
        self.stdout.write("Loading demo data")
        load_demo(out=self.stdout.write)
        users = ", ".join(f"{name} ({role})" for name, role in DEMO_USERS)
        self.stdout.write(self.style.SUCCESS(f"Demo ready. Users: {users}; password {DEMO_PASSWORD!r}"))
