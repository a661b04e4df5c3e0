#!/usr/bin/env bash
# Installs the npm dependencies when they are missing or older than package-lock.json, so that
# `npm start` and `npm test` work on a fresh clone. Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v node >/dev/null || { echo "bootstrap: Node.js 20 is not installed" >&2; exit 1; }
# package.json's engines: >=20.19 (require() of ES modules, used by some dependencies).
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
  || { echo "bootstrap: Node.js 20.19 or newer is needed, found $(node -v)" >&2; exit 1; }
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm install, not npm ci: see the note in .ci/run (a registry without every platform build).
  echo "bootstrap: installing npm dependencies"
  npm install --no-audit --no-fund
fi
