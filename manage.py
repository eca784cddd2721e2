#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    # In a checkout that `make run` set up, commands work as the README writes them: the secret
    # key is the one make created (production sets SECRET_KEY or SECRET_KEY_FILE itself).
    key = Path(__file__).resolve().parent / "var" / "secret_key"
    if not os.environ.get("SECRET_KEY") and not os.environ.get("SECRET_KEY_FILE") and key.is_file():
        os.environ["SECRET_KEY_FILE"] = str(key)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
