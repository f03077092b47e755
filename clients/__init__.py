"""The bundled SMTP client, installed as ``smtp_sink.clients`` (see ``smtp_client.py``)."""
