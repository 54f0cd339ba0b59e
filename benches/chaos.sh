#!/usr/bin/env bash
# The chaos soak for 10 minutes (or SECONDS_TO_RUN): a seeded random schedule
# of faults against holdfast with legacy and modern clients, exact accounting,
# and holdfast's memory slope. Writes benches/results/chaos.json.
#
#   bash benches/chaos.sh [SEED]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-test-deps.sh >/dev/null
cargo build --release --locked -p holdfast -p holdfast-sim
seed="${1:-$(date +%s)}"
HOLDFAST_BIN_DIR="$PWD/target/release" .venv/py4/bin/python tests/e2e/chaos.py \
    --seconds "${SECONDS_TO_RUN:-600}" --seed "$seed" --json benches/results/chaos.json
