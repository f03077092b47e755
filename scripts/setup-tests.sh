#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, into the project's own
# virtual environment (.venv, made when missing; the system's Python is never touched, PEP 668):
# the package with its test extras, and the Debian tools the end-to-end tests drive (swaks with
# its TLS and SASL modules, and curl, run by tests/test_examples.py; chromium for the web page
# tests, driven by Playwright for Python: no browser is downloaded; python3-venv when the
# system's Python cannot make a virtual environment). Node.js and npm run examples/nodemailer:
# the test installs nodemailer itself with npm into ~/.cache/smtp-sink-tests/npm, never globally.
# spamd (SpamAssassin) answers the sa-check tests (tests/test_spam_check.py starts its own).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# swaks needs Net::SSLeay/IO::Socket::SSL for --tls and Authen::SASL for --auth (Debian only recommends them)
apt_packages=(swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl curl chromium spamd)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# node and npm may come from another source than Debian (e.g. a newer Node.js): look for the commands
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Debian's python3 makes a venv only with python3-venv (ensurepip) installed
[ -x .venv/bin/python ] || python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
    else
        echo "setup-tests: please install with apt: ${missing[*]}" >&2
        exit 1
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' </dev/null
