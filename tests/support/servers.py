"""Real servers on their own threads, the way every test gets one (the ``start_server`` fixture)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smtp_sink.config import Config
from smtp_sink.protocol import Policy
from smtp_sink.server import ServerThread, SinkServer
from support.config import make_config, toml_config


class Servers:
    """Start servers on free ports; stop one early with :meth:`stop` (to restart on the same store);
    :meth:`stop_all` (the fixture's teardown, run even when the test failed) stops the rest."""

    def __init__(self, store: Path) -> None:
        self.store = store  # the default store folder
        self._threads: list[ServerThread] = []

    def __call__(
        self, store: Path | None = None, *, http: bool | Mapping[str, object] = False, policy: Policy | None = None,
        store_options: Mapping[str, object] | None = None, auth: Mapping[str, object] | None = None,
        tls: Mapping[str, object] | None = None, toml: str | Path | None = None, config: Config | None = None,
        **smtp: object,
    ) -> SinkServer:
        """Start a server and wait until it listens. The config is ``config`` as given, else read from
        ``toml`` (text or a file; see :func:`toml_config`), else built by :func:`make_config` from the
        other arguments; ``store`` defaults to the test's ``tmp_path / "mail"``."""
        settings = store_options or auth or tls or http or smtp
        if config is not None and (settings or store or toml is not None):
            raise TypeError("start_server(config=...) takes the config as it is: put the settings in it")
        if toml is not None and settings:
            raise TypeError("start_server(toml=...) takes its settings from the TOML")
        if config is None:
            store = store or self.store
            config = (toml_config(toml, store) if toml is not None else
                      make_config(store, store_options, http=http, auth=auth, tls=tls, **smtp))
        thread = ServerThread(config, policy)
        self._threads.append(thread)
        return thread.start()

    def stop(self, server: SinkServer) -> None:
        """Stop ``server`` now (open sessions get 421), as a user stopping ``smtp-sink serve``."""
        next(thread for thread in self._threads if thread.server is server).stop()

    def stop_all(self) -> None:
        """Stop every server still running, the last started first."""
        for thread in reversed(self._threads):
            thread.stop()
