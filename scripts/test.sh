#!/usr/bin/env bash
# Runs every test of holdfast: Rust unit and integration tests (wire, sim,
# topology, proxy), then the end-to-end tests with real clients (pymongo 4 and
# 3.12, the Node driver, mongosh, the legacy drivers) against holdfast-sim and
# holdfast, and against the production build (no embedded replica set).
# Installs what the tests need first (scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== installing test dependencies"
bash scripts/install-test-deps.sh

echo "== building"
cargo build --workspace --bins --locked
# The production build (no embedded replica set), in its own target dir so
# it does not replace target/debug/holdfast; tests/e2e/test_builds.py runs it.
CARGO_TARGET_DIR=target/no-sim cargo build -p holdfast --no-default-features --bin holdfast --locked

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

if ls tests/e2e/test_*.py >/dev/null 2>&1; then
  echo "== end-to-end tests with real clients"
  HOLDFAST_BIN_DIR="$PWD/target/debug" .venv/py4/bin/python -m pytest -q tests/e2e
fi

echo "== deploy/ checks (promtool, kubernetes-validate, dashboard, live Prometheus)"
bash scripts/check-deploy.sh
