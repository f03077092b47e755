"""Django's command-line utility for this example project (``sendtestemail`` and the rest)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")  # this folder is on sys.path
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
