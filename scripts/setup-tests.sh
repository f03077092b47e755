#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine: the package with its
# test extras, and the Debian tools the end-to-end tests drive (swaks; chromium for the web
# page tests, driven by Playwright for Python: no browser is downloaded).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(swaks chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
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

python3 -m pip install -q --disable-pip-version-check -e '.[test,fast]' </dev/null
