#!/usr/bin/env bash
# The test command: prepare the real servers the tests use (PostgreSQL, aiosmtpd,
# Prometheus), then run every test. Safe to run again; set-up is skipped when done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/test-env.sh
set -a
# shellcheck disable=SC1091
. .test-env/env
set +a
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
    # nextest does not run doctests.
    cargo test --doc --quiet
else
    cargo test --no-fail-fast "$@"
fi
