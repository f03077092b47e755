"""Reproducible benchmark of smtp-sink against Postfix's smtp-sink, aiosmtpd and MailDev (see bench/run.sh)."""
