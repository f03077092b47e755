"""A Django project's mail settings as production has them: SMTP, STARTTLS, a login.

Only the values come from the environment (SMTP_HOST, SMTP_PORT, SMTP_TLS = starttls | implicit
| off, SMTP_USER, SMTP_PASSWORD), with defaults that reach ``smtp-sink serve --auth accept-any``
on localhost:2525. Django verifies the certificate (``ssl.create_default_context()``): run with
``SSL_CERT_FILE=<store>/tls/ca.pem``, nothing in these settings changes for smtp-sink.
"""

import os

from django.core.exceptions import ImproperlyConfigured

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
INSTALLED_APPS: list[str] = []
USE_TZ = True

_tls = os.environ.get("SMTP_TLS", "starttls").lower()
if _tls not in ("starttls", "implicit", "off"):
    raise ImproperlyConfigured(f"SMTP_TLS must be starttls, implicit or off, not {_tls!r}")

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ.get("SMTP_HOST", "localhost")
EMAIL_USE_TLS = _tls == "starttls"  # STARTTLS on the submission port
EMAIL_USE_SSL = _tls == "implicit"  # implicit TLS (port 465 style)
try:
    EMAIL_PORT = int(os.environ.get("SMTP_PORT") or (2465 if EMAIL_USE_SSL else 2525))
except ValueError:
    raise ImproperlyConfigured(f"SMTP_PORT must be a port number, not {os.environ['SMTP_PORT']!r}") from None
EMAIL_HOST_USER = os.environ.get("SMTP_USER", "app@example.test")  # empty: no login
EMAIL_HOST_PASSWORD = os.environ.get("SMTP_PASSWORD", "secret")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = "App <app@example.test>"
