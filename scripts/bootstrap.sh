#!/usr/bin/env bash
# Makes a fresh clone runnable: a supported Node.js (24 LTS; installed into .tools/node from the npm
# registry when the machine's node is older, see scripts/lib/node-runtime.sh), then the npm
# dependencies when they are missing or older than package-lock.json. Idempotent and quick when
# nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/node-runtime.sh
use_supported_node
# A patch newer than the install (patches/, applied by npm's postinstall) also calls for one.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ -n "$(find patches -newer node_modules/.package-lock.json -print -quit 2>/dev/null)" ]; then
  # npm install, not npm ci: see the note in .ci/run (a registry without every platform build).
  echo "bootstrap: installing npm dependencies with Node.js $(node -v)"
  npm install --no-audit --no-fund
fi
