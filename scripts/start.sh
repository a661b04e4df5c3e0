#!/usr/bin/env bash
# `npm start`: the whole pipeline on this machine. Installs what is missing, starts Kafka, Redis and PostgreSQL,
# then scripts/pipeline.ts generates sample data if needed, runs the api and the aggregator and
# triggers a first run. Ctrl-C stops every process it started, Kafka, Redis and PostgreSQL included when this
# command was the one that started them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/bootstrap.sh
source scripts/lib/node-runtime.sh
use_supported_node
before=$(bash infra/infra.sh status)
bash infra/infra.sh up
after=$(bash infra/infra.sh status)

stop_infra() {
  # Only what this command started: a broker or Redis that ran before it keeps running.
  if ! grep -q 'kafka running' <<<"$before" && grep -q 'kafka running' <<<"$after"; then bash infra/infra.sh down kafka; fi
  if ! grep -q 'redis.*started by us' <<<"$before" && grep -q 'redis.*started by us' <<<"$after"; then bash infra/infra.sh down redis; fi
  if ! grep -q 'postgresql.*started by us' <<<"$before" && grep -q 'postgresql.*started by us' <<<"$after"; then bash infra/infra.sh down postgres; fi
}
trap stop_infra EXIT
# Ctrl-C reaches the launcher and its children through the terminal's process group; this shell
# only waits for them and then stops the infrastructure.
trap ':' INT TERM
node --import tsx scripts/pipeline.ts "$@" &
wait $! || wait $! || true
