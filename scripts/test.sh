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
# Every test that needs PostgreSQL has `postgres` in its name. SLAKEEPER_TEST_SKIP_PG=1 filters
# them out so the summary counts them as skipped; CI must run them all.
filter=()
libtest_skip=()
if [ "${SLAKEEPER_TEST_SKIP_PG:-}" = "1" ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "error: CI=true: the PostgreSQL tests cannot be skipped (unset SLAKEEPER_TEST_SKIP_PG)" >&2
        exit 1
    fi
    echo "SLAKEEPER_TEST_SKIP_PG=1: every test named *postgres* is skipped"
    filter=(-E 'not test(/postgres/)')
    libtest_skip=(-- --skip postgres)
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "${filter[@]}" "$@"
    # nextest does not run doctests.
    cargo test --doc --quiet
else
    cargo test --no-fail-fast "$@" "${libtest_skip[@]}"
fi
