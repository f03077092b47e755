#!/usr/bin/env bash
# Benchmark smtp-sink against Postfix's smtp-sink, aiosmtpd and MailDev, driven by Postfix's
# smtp-source. One command from a fresh clone (as root, non-interactive):
#     bench/run.sh            issue 18's figures: (a)-(d), NOOP latency, memory, then --workers 1 and 2 (about 14 minutes on 2 cores)
#     bench/run.sh --quick    small counts, one run: checks the harness in about a minute
#     bench/run.sh --only a,b --servers ours,postfix-d     (--only inspect: the inspection figures)
# Everything it fetches goes into bench/.cache/ (git-ignored); it installs only what is missing:
# Postfix's binaries extracted from the Debian package (no mail system is installed), socat (apt),
# MailDev (npm), and this package with its extras (pip: uvloop, aiosmtpd).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=bench/.cache
mkdir -p "$cache"
export DEBIAN_FRONTEND=noninteractive

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else echo "bench: needs root for: $*" >&2; exit 1; fi
}

# Postfix smtp-source / smtp-sink: apt-get download + dpkg -x, no installation.
if [ ! -x "$cache/postfix/usr/sbin/smtp-source" ]; then
    (cd "$cache" && rm -f postfix_*.deb \
        && { apt-get download -o APT::Sandbox::User=root postfix </dev/null >/dev/null 2>&1 \
             || { as_root apt-get update -qq </dev/null && apt-get download -o APT::Sandbox::User=root postfix </dev/null; }; } \
        && rm -rf postfix && dpkg -x postfix_*.deb postfix \
        && dpkg-deb -f postfix_*.deb Version > postfix/VERSION)
fi

# socat: the loopback-socket-to-file reference for the 10 MiB workload.
if ! command -v socat >/dev/null; then
    as_root apt-get install -y -qq --no-install-recommends socat </dev/null >/dev/null \
        || { as_root apt-get update -qq </dev/null && as_root apt-get install -y -qq --no-install-recommends socat </dev/null; }
fi

# MailDev from npm, local to the cache folder.
if [ ! -f "$cache/maildev/node_modules/maildev/package.json" ]; then
    command -v npm >/dev/null || as_root apt-get install -y -qq --no-install-recommends nodejs npm </dev/null
    mkdir -p "$cache/maildev"
    (cd "$cache/maildev" && npm install --no-audit --no-fund --loglevel=error maildev </dev/null)
fi

# Ours (editable, with uvloop) and aiosmtpd.
python3 - <<'PY' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check -e '.[fast,test]' </dev/null
import aiosmtpd, smtp_sink, uvloop  # noqa: F401
PY

python3 -m bench "$@"
# The default run (no arguments) also gives the --workers figures (python3 -m bench.workers).
if [ "$#" = 0 ]; then
    python3 -m bench.workers
fi
