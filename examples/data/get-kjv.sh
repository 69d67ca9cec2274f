#!/usr/bin/env bash
# Writes the whole King James Bible (public domain; ~4.3 MB of plain text) to the file given (default
# data/kjv.txt), without root: Debian's bible-kjv (the `bible` program) and bible-kjv-text (its data) are
# downloaded with apt-get download, unpacked with dpkg -x into a temporary directory, and the unpacked
# program prints every verse from the unpacked data (-p). Needs a Debian-family machine with apt sources.
set -euo pipefail
out="${1:-data/kjv.txt}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download bible-kjv bible-kjv-text >/dev/null)
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
mkdir -p "$(dirname "$out")"
"$tmp/root/usr/bin/bible" -p "$tmp/root/usr/lib" "Gen1:1-Rev22:21" > "$out.tmp"
if [ "$(wc -c < "$out.tmp")" -lt 4000000 ]; then
  echo "get-kjv: $out.tmp is only $(wc -c < "$out.tmp") bytes; expected about 4.3 MB" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c < "$out") bytes)"
