#!/bin/sh
# device-deps.sh — the Debian libraries the build needs (cJSON, cmocka) unpacked into .ddeps/root, for a machine
# that has none and cannot fetch them (the device tool's GPU machines): run here, then carry .ddeps with the call;
# bench/cuda_bench.sh builds against it when it is there.
set -eu
cd "$(dirname "$0")/.."
rm -rf .ddeps && mkdir -p .ddeps/debs .ddeps/root
(cd .ddeps/debs && apt-get download libcjson-dev libcjson1 libcmocka-dev libcmocka0 2>/dev/null)
for f in .ddeps/debs/*.deb; do dpkg -x "$f" .ddeps/root; done
grep -q '^/.ddeps/' .git/info/exclude 2>/dev/null || echo '/.ddeps/' >>.git/info/exclude
echo "device-deps: $(ls .ddeps/debs | tr '\n' ' ')-> .ddeps/root (carry .ddeps)"
