"""Send one message with Django's ``send_mail`` and the settings in ``settings.py``.

    smtp-sink serve --auth accept-any
    SSL_CERT_FILE=mail/tls/ca.pem python examples/django_app/send.py [recipient ...]

``python examples/django_app/manage.py sendtestemail ann@example.test`` sends Django's own test
message through the same settings.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")  # this folder is on sys.path


def main(argv: list[str]) -> int:
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
        from django.core.mail import send_mail

        recipients = argv or ["ann@example.test"]
        send_mail("Hello from Django", "Sent by examples/django_app/send.py.\n", None, recipients)
    except ImproperlyConfigured as exc:
        print(f"django send: {exc}", file=sys.stderr)
        return 2
    except ssl.SSLCertVerificationError as exc:
        print(f"django send: {exc.verify_message}: trust smtp-sink's certificate with "
              "SSL_CERT_FILE=<store>/tls/ca.pem", file=sys.stderr)
        return 1
    except (OSError, smtplib.SMTPException) as exc:
        print(f"django send: cannot send through {settings.EMAIL_HOST}:{settings.EMAIL_PORT}: {exc}", file=sys.stderr)
        return 1
    print(f"django send: sent to {', '.join(recipients)} through {settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
