#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    if sys.argv[1:2] == ["run"]:
        # `manage.py run` is the local console on the embedded default: plain http, DEBUG on.
        os.environ.setdefault("DEBUG", "1")
    elif sys.argv[1:2] == ["makemigrations"]:
        # Writing (or checking) migration files reads the models and never signs or serves
        # anything, so it needs no real key; every other command with DEBUG off still does.
        os.environ.setdefault("SECRET_KEY", "makemigrations-signs-nothing")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
