#!/bin/sh
# Send one message with curl: STARTTLS required (--ssl-reqd), then a login.
#
#   smtp-sink serve --auth accept-any
#   SMTP_CAFILE=mail/tls/ca.pem sh examples/send_curl.sh [recipient]
#
# Settings come from the environment: SMTP_HOST (localhost), SMTP_PORT (2525; 2465 with
# SMTP_TLS=implicit, which uses smtps://), SMTP_TLS (starttls | implicit | off), SMTP_USER
# (app@example.test; empty: no login), SMTP_PASSWORD (secret), SMTP_CAFILE (the authority to
# trust, passed as --cacert: smtp-sink's generated ca.pem; unset: curl's own, or CURL_CA_BUNDLE).
set -eu

host=${SMTP_HOST:-localhost}
tls=${SMTP_TLS:-starttls}
user=${SMTP_USER-app@example.test}
password=${SMTP_PASSWORD-secret}
to=${1:-ann@example.test}
case $tls in
    starttls) scheme=smtp; port=${SMTP_PORT:-2525}; set -- --ssl-reqd ;;
    implicit) scheme=smtps; port=${SMTP_PORT:-2465}; set -- ;;
    off) scheme=smtp; port=${SMTP_PORT:-2525}; set -- ;;
    *) echo "send_curl: SMTP_TLS must be starttls, implicit or off, not '$tls'" >&2; exit 2 ;;
esac
case $port in
    '' | *[!0-9]*) echo "send_curl: SMTP_PORT must be a port number, not '$port'" >&2; exit 2 ;;
esac
if [ -n "${SMTP_CAFILE:-}" ]; then set -- "$@" --cacert "$SMTP_CAFILE"; fi
if [ -n "$user" ]; then set -- "$@" --user "$user:$password"; fi

# The URL's path is the name curl gives itself in EHLO; the message is read from standard input.
status=0
curl --silent --show-error --max-time 10 --crlf "$@" --url "$scheme://$host:$port/client.example.test" \
    --mail-from app@example.test --mail-rcpt "$to" --upload-file - <<MESSAGE || status=$?
From: App <app@example.test>
To: $to
Subject: Hello from curl
Date: $(LC_ALL=C date -R)
Message-ID: <$(date +%s).$$@client.example.test>

Sent by examples/send_curl.sh.
MESSAGE
if [ "$status" = 60 ]; then
    echo "send_curl: trust smtp-sink's certificate with SMTP_CAFILE=<store>/tls/ca.pem" >&2
fi
[ "$status" = 0 ] || exit "$status"
echo "send_curl: sent to $to through $host:$port"
