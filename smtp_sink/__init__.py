"""smtp-sink: a local SMTP mail sink that stores every accepted message as a .eml file."""

__version__ = "0.1.0"
