#!/bin/sh
# Send one message with swaks: STARTTLS required (--tls), then a login (--auth).
#
#   smtp-sink serve --auth accept-any
#   sh examples/send_swaks.sh [recipient]
#
# Settings come from the environment: SMTP_HOST (localhost), SMTP_PORT (2525; 2465 with
# SMTP_TLS=implicit, which uses --tls-on-connect), SMTP_TLS (starttls | implicit | off), SMTP_USER
# (app@example.test; empty: no login), SMTP_PASSWORD (secret), SMTP_CAFILE (unset: swaks does
# not verify the certificate, its default; set to smtp-sink's ca.pem: --tls-verify --tls-ca-path).
set -eu

host=${SMTP_HOST:-localhost}
tls=${SMTP_TLS:-starttls}
user=${SMTP_USER-app@example.test}
password=${SMTP_PASSWORD-secret}
to=${1:-ann@example.test}
case $tls in
    starttls) port=${SMTP_PORT:-2525}; set -- --tls ;;
    implicit) port=${SMTP_PORT:-2465}; set -- --tls-on-connect ;;
    off) port=${SMTP_PORT:-2525}; set -- ;;
    *) echo "send_swaks: SMTP_TLS must be starttls, implicit or off, not '$tls'" >&2; exit 2 ;;
esac
case $port in
    '' | *[!0-9]*) echo "send_swaks: SMTP_PORT must be a port number, not '$port'" >&2; exit 2 ;;
esac
if [ "$tls" != off ] && [ -n "${SMTP_CAFILE:-}" ]; then
    set -- "$@" --tls-verify --tls-ca-path "$SMTP_CAFILE"
fi
if [ -n "$user" ]; then set -- "$@" --auth --auth-user "$user" --auth-password "$password"; fi

swaks --silent 2 --timeout 10 --server "$host:$port" --helo client.example.test "$@" \
    --from app@example.test --to "$to" \
    --header "From: App <app@example.test>" --header "Subject: Hello from swaks" \
    --body "Sent by examples/send_swaks.sh."
echo "send_swaks: sent to $to through $host:$port"
