"""``python -m smtp_sink`` is the same as the ``smtp-sink`` command."""

from .cli import main

raise SystemExit(main())
