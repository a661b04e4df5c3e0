#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser test (test/e2e/dashboard.test.ts drives it with
# playwright-core: no browser is downloaded from a CDN, and none is committed). Installs the
# `chromium` package with apt-get when /usr/bin/chromium is missing and this runs as root.
# Idempotent. Exits non-zero, saying why, when Chromium is not there afterwards; the browser test
# then skips with that reason.
set -uo pipefail
CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then echo "chromium: $CHROMIUM is installed"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "chromium: $CHROMIUM is missing and this is not root, so it cannot be installed (apt-get install chromium)"; exit 1; fi
command -v apt-get >/dev/null || { echo "chromium: $CHROMIUM is missing and there is no apt-get to install it"; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "chromium: installing Debian's chromium package (apt-get, once)"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
  tail -15 "$log"
  echo "chromium: apt-get could not install chromium"
  exit 1
fi
[ -x "$CHROMIUM" ] || { echo "chromium: the package is installed but $CHROMIUM is not there"; exit 1; }
echo "chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
