#!/usr/bin/env bash
# Refresh the vendored caniemail.com data (smtp_sink/data/caniemail/caniemail.json) that
# GET /api/v1/message/{id}/html-check reads. The data is taken from the npm package "caniemail"
# (its data/caniemail.json), fetched here with `npm pack` by a maintainer, never at run time.
# Usage: scripts/refresh-caniemail.sh [version]   (default: the newest published version)
# Then run the tests (tests/test_html_check.py checks that every feature the check looks for is
# still in the data) and commit the JSON together with the updated SOURCE file.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-$(npm view caniemail version)}"
target=smtp_sink/data/caniemail
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "caniemail@${version}" >/dev/null)
tar -xzf "$work/caniemail-${version}.tgz" -C "$work" package/data/caniemail.json
python3 - "$work/package/data/caniemail.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1], encoding="utf-8"))
assert {"api_version", "nicenames", "data"} <= set(data), "not caniemail data"
assert all("slug" in feature and "stats" in feature for feature in data["data"]), "a feature lacks slug/stats"
print(f"caniemail data: api {data['api_version']}, updated {data['last_update_date']}, {len(data['data'])} features")
PY
cp "$work/package/data/caniemail.json" "$target/caniemail.json"
integrity="$(npm view "caniemail@${version}" dist.integrity)"
cat > "$target/SOURCE" <<TXT
npm package caniemail@${version} (${integrity}), file package/data/caniemail.json, copied unchanged.
Refreshed with scripts/refresh-caniemail.sh on $(date -u +%Y-%m-%d). Licence of the data: see LICENSE (CC BY 4.0).
TXT
echo "updated $target/caniemail.json and $target/SOURCE"
