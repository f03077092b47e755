"""pytest plugin (``pytest11`` entry point): the ``smtp_sink`` fixture. Filled in by issue 7."""
