"""Test configurations: free ports, a temporary store, HTTP off unless asked for."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from smtp_sink.config import Config, SMTPConfig, StoreConfig, load


def make_config(
    store: Path, store_options: Mapping[str, object] | None = None, *,
    http: bool | Mapping[str, object] = False,
    auth: Mapping[str, object] | None = None, tls: Mapping[str, object] | None = None, **smtp: object,
) -> Config:
    """A config for tests: free ports, the given store (and ``[store]`` options), SMTP overrides, and
    ``[auth]`` / ``[tls]`` keys (``tls`` defaults to a free implicit-TLS port). HTTP is off; ``http=True``
    turns it on on a free port, a mapping of ``[http]`` keys turns it on with those keys."""
    base = Config()
    http_keys = dict(http) if isinstance(http, Mapping) else {}
    return dataclasses.replace(
        base,
        smtp=dataclasses.replace(SMTPConfig(port=0), **smtp),
        store=StoreConfig(path=str(store), **(store_options or {})),
        auth=dataclasses.replace(base.auth, **(auth or {})),
        tls=dataclasses.replace(base.tls, **{"port": 0, **(tls or {})}),
        http=dataclasses.replace(base.http, **{"enabled": http is not False, "port": 0, **http_keys}),
    )


def toml_config(source: str | Path, store: Path) -> Config:
    """A config read the way ``serve --config`` reads it, from a file or from TOML text (written
    beside ``store``), with the store, free SMTP and implicit-TLS ports, HTTP off and no environment."""
    path = source if isinstance(source, Path) else store.parent / f"{store.name}.toml"
    if not isinstance(source, Path):
        path.write_text(source)
    overrides = {"smtp": {"port": 0}, "tls": {"port": 0}, "store": {"path": str(store)}, "http": {"enabled": False}}
    return load(path, overrides, environ={})
