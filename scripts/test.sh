#!/usr/bin/env bash
# The test command: prepare the real servers the tests use (PostgreSQL, aiosmtpd,
# Prometheus, dockerd with a local base image), then run every test. Safe to run again;
# set-up is skipped when done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/test-env.sh
set -a
# shellcheck disable=SC1091
. .test-env/env
set +a
# Tests may be left out on a machine that cannot run them, never in CI:
#   SLAKEEPER_TEST_SKIP_PG=1     every test named *postgres*
#   SLAKEEPER_TEST_SKIP_IMAGE=1  tests/it/image.rs, every test named image_* (docker,
#                                docker-compose, systemd-analyze)
# nextest counts them as skipped in its summary.
exprs=()
libtest_skip=()
for what in PG IMAGE; do
    var="SLAKEEPER_TEST_SKIP_$what"
    [ "${!var:-}" = "1" ] || continue
    if [ "${CI:-}" = "true" ]; then
        echo "error: CI=true: these tests cannot be skipped (unset $var)" >&2
        exit 1
    fi
    case "$what" in
    PG)
        echo "$var=1: every test named *postgres* is skipped"
        exprs+=('not test(/postgres/)')
        libtest_skip+=(--skip postgres)
        ;;
    IMAGE)
        echo "$var=1: tests/it/image.rs is skipped"
        # Every test there is named image_*, wherever the file's tests end up living.
        exprs+=('not test(/image_/)')
        libtest_skip+=(--skip image_)
        ;;
    esac
done
filter=()
if [ "${#exprs[@]}" -gt 0 ]; then
    joined="${exprs[0]}"
    for e in "${exprs[@]:1}"; do joined="$joined and $e"; done
    filter=(-E "$joined")
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "${filter[@]}" "$@"
    # nextest does not run doctests.
    cargo test --doc --quiet
elif [ "${#libtest_skip[@]}" -gt 0 ]; then
    cargo test --no-fail-fast "$@" -- "${libtest_skip[@]}"
else
    cargo test --no-fail-fast "$@"
fi
