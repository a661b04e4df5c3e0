#!/usr/bin/env bash
# `npm start`: the whole pipeline on this machine. Installs what is missing, starts Kafka and Redis,
# then scripts/pipeline.ts generates sample data if needed, runs the api and the aggregator and
# triggers a first run. Ctrl-C stops every process it started, Kafka and Redis included when this
# command was the one that started them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/bootstrap.sh
kafka_before=$(bash infra/infra.sh status)
bash infra/infra.sh up
kafka_after=$(bash infra/infra.sh status)

stop_infra() {
  # Only what this command started: a broker that ran before it keeps running.
  if ! grep -q 'kafka running' <<<"$kafka_before" && grep -q 'kafka running' <<<"$kafka_after"; then
    bash infra/infra.sh down
  fi
}
trap stop_infra EXIT
# Ctrl-C reaches the launcher and its children through the terminal's process group; this shell
# only waits for them and then stops the infrastructure.
trap ':' INT TERM
node --import tsx scripts/pipeline.ts "$@" &
wait $! || wait $! || true
