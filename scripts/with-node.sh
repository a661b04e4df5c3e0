#!/usr/bin/env bash
# Runs a command with the project's supported Node.js first on PATH (scripts/lib/node-runtime.sh):
#   bash scripts/with-node.sh tap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/node-runtime.sh"
use_supported_node
exec "$@"
