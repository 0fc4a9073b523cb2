#!/usr/bin/env bash
# Prepare the real servers slakeeper's tests talk to, on a Debian 12 machine, as root.
#
# Idempotent: every step checks first and only acts when something is missing, so a second
# run on a ready machine takes well under 3 seconds and changes nothing.
#
#   - PostgreSQL: installed, a cluster running, `pg_isready -h 127.0.0.1`, user postgres can
#     log in over 127.0.0.1 without a password, database `test` exists, and the extensions
#     hstore and pgcrypto can be created in it.
#   - aiosmtpd 1.4.6 (SMTP receiver for mail tests) in a venv at .test-env/venv.
#   - prometheus + promtool (Debian's 2.42) for query and rule tests; no daemon left running.
#   - chromium + chromium-driver (Debian's) and a CJK font, for the staff pages' browser tests.
#   - openssl, to make throw-away certificates for the HTTPS tests.
#   - docker.io + dockerd (started, left running), docker-compose, a base image made with
#     debootstrap (cached in /var/cache/slakeeper-test), systemd-analyze: scripts/test-env-image.sh.
#     SLAKEEPER_TEST_SKIP_IMAGE=1 leaves them out (tests/it/image.rs is then skipped by test.sh).
#
# It exports nothing. What the tests need is written to .test-env/env, one KEY=VALUE a line:
#   SLAKEEPER_TEST_PG_URL, SLAKEEPER_TEST_AIOSMTPD, SLAKEEPER_TEST_PROMETHEUS,
#   SLAKEEPER_TEST_PROMTOOL, SLAKEEPER_TEST_CHROMIUM, SLAKEEPER_TEST_CHROMEDRIVER,
#   SLAKEEPER_TEST_OPENSSL, and scripts/test-env-image.sh's SLAKEEPER_TEST_DOCKER,
#   SLAKEEPER_TEST_BASE_IMAGE, SLAKEEPER_TEST_COMPOSE, SLAKEEPER_TEST_SYSTEMD_ANALYZE
# .test-env/ holds its own .gitignore, so nothing in it is ever committed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO/.test-env"
VENV="$STATE/venv"
AIOSMTPD_VERSION="1.4.6"
PG_DB="test"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[test-env] %s\n' "$*"; }
die() { printf '[test-env] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it may apt-get install and start PostgreSQL)"

# ---------------------------------------------------------------- apt helpers
APT_UPDATED=0
POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_RC_D_OURS=0
cleanup() {
    # Only remove a policy-rc.d we created ourselves.
    if [ "$POLICY_RC_D_OURS" -eq 1 ]; then rm -f "$POLICY_RC_D"; fi
}
trap cleanup EXIT

apt_install() {
    # apt_install [--no-start] PKG...: --no-start keeps the packages' daemons from being
    # started by their maintainer scripts (invoke-rc.d / deb-systemd-invoke honour policy-rc.d).
    local no_start=0
    if [ "${1:-}" = "--no-start" ]; then no_start=1; shift; fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    if [ "$no_start" -eq 1 ] && [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# temporary, from slakeeper scripts/test-env.sh\nexit 101\n' >"$POLICY_RC_D"
        chmod 755 "$POLICY_RC_D"
        POLICY_RC_D_OURS=1
    fi
    log "apt-get install -y --no-install-recommends $*"
    local out
    out="$(mktemp)"
    if ! apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        die "apt-get install $* failed"
    fi
    rm -f "$out"
    if [ "$POLICY_RC_D_OURS" -eq 1 ]; then rm -f "$POLICY_RC_D"; POLICY_RC_D_OURS=0; fi
}

port_listening() {
    # port_listening PORT: true when something listens on TCP PORT (any address).
    local hex
    hex="$(printf '%04X' "$1")"
    # /proc/net/tcp{,6}: column 2 is local addr:port in hex, column 4 is the state (0A = LISTEN).
    awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# ---------------------------------------------------------------- PostgreSQL
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    log "postgres: not installed"
    apt_install postgresql postgresql-contrib
fi

if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
    [ -n "$ver" ] || die "postgres: no server version under /usr/lib/postgresql"
    log "postgres: no cluster, creating $ver/main"
    pg_createcluster "$ver" main >/dev/null
fi

# Start every cluster that is down.
while read -r ver name _port status _; do
    case "$status" in
    online*) ;;
    *)
        log "postgres: cluster $ver/$name is $status, starting it"
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
        ;;
    esac
done < <(pg_lsclusters -h)

# The cluster the tests use: the one on $SLAKEEPER_TEST_PG_PORT (default 5432) if there is
# one, else the first listed.
want_port="${SLAKEEPER_TEST_PG_PORT:-5432}"
read -r PG_VER PG_CLUSTER PG_PORT _ < <(pg_lsclusters -h | awk -v p="$want_port" '$3 == p' | head -n1) || true
if [ -z "${PG_PORT:-}" ]; then
    read -r PG_VER PG_CLUSTER PG_PORT _ < <(pg_lsclusters -h | head -n1)
fi

for i in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then break; fi
    [ "$i" -eq 60 ] && die "postgres: 127.0.0.1:$PG_PORT not ready after 30 s"
    sleep 0.5
done
log "postgres: $PG_VER/$PG_CLUSTER ready on 127.0.0.1:$PG_PORT"

tcp_psql() { psql -X -q -w -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
sock_psql() { runuser -u postgres -- psql -X -q -w -p "$PG_PORT" "$@"; }

if ! tcp_psql -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    # Debian's default is scram over TCP with no password set: allow postgres from loopback
    # (a test machine only). The first matching pg_hba line wins, so ours goes first.
    hba="$(sock_psql -d postgres -Atc 'show hba_file')"
    log "postgres: user postgres cannot log in over 127.0.0.1; adding trust lines to $hba"
    {
        echo "# added by slakeeper scripts/test-env.sh (test machine): postgres over loopback"
        echo "host all postgres 127.0.0.1/32 trust"
        echo "host all postgres ::1/128 trust"
        cat "$hba"
    } >"$hba.new"
    chown --reference="$hba" "$hba.new"
    chmod --reference="$hba" "$hba.new"
    mv "$hba.new" "$hba"
    sock_psql -d postgres -Atc 'select pg_reload_conf()' >/dev/null
    sleep 0.2
    tcp_psql -d postgres -Atc 'select 1' >/dev/null || die "postgres: still cannot log in over 127.0.0.1"
fi
log "postgres: user postgres logs in over 127.0.0.1 (ok)"

if [ "$(tcp_psql -d postgres -Atc "select 1 from pg_database where datname = '$PG_DB'")" != "1" ]; then
    log "postgres: creating database $PG_DB"
    tcp_psql -d postgres -c "create database $PG_DB" >/dev/null
else
    log "postgres: database $PG_DB exists (ok)"
fi

ext_check() {
    # Creates both extensions inside a transaction that is rolled back: proves they can be
    # created without leaving them behind.
    tcp_psql -d "$PG_DB" -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<'SQL'
begin;
create extension if not exists hstore;
create extension if not exists pgcrypto;
rollback;
SQL
}
if ! ext_check; then
    log "postgres: hstore/pgcrypto not available"
    apt_install "postgresql-contrib"
    ext_check || die "postgres: hstore/pgcrypto still cannot be created in $PG_DB"
fi
log "postgres: extensions hstore and pgcrypto can be created (ok)"

PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"

# ---------------------------------------------------------------- aiosmtpd
mkdir -p "$STATE"
[ -f "$STATE/.gitignore" ] || printf '# made by scripts/test-env.sh: nothing here is committed\n*\n' >"$STATE/.gitignore"

aiosmtpd_ok() {
    "$1" - "$AIOSMTPD_VERSION" >/dev/null 2>&1 <<'PY'
import sys, aiosmtpd, aiosmtpd.handlers
sys.exit(0 if aiosmtpd.__version__ == sys.argv[1] else 1)
PY
}
aiosmtpd_any() { "$1" -c 'import aiosmtpd.handlers' >/dev/null 2>&1; }

AIOSMTPD_PY=""
FALLBACK_MARK="$STATE/aiosmtpd-from-debian"
if [ -x "$VENV/bin/python" ] && aiosmtpd_ok "$VENV/bin/python"; then
    AIOSMTPD_PY="$VENV/bin/python"
    rm -f "$FALLBACK_MARK"
    log "aiosmtpd: $AIOSMTPD_VERSION in $VENV (ok)"
elif [ -f "$FALLBACK_MARK" ] && aiosmtpd_any /usr/bin/python3; then
    # An earlier run could not reach PyPI; don't retry on every run (delete the mark to).
    AIOSMTPD_PY=/usr/bin/python3
    log "aiosmtpd: Debian's python3-aiosmtpd (ok; rm $FALLBACK_MARK to retry PyPI)"
else
    # Debian's interpreter outlives any per-user one (pyenv shims, PATH changes).
    BASE_PY=""
    for py in /usr/bin/python3 "$(command -v python3 || true)"; do
        if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            BASE_PY="$py"
            break
        fi
    done
    if [ -z "$BASE_PY" ]; then
        log "python: no interpreter with venv/ensurepip"
        apt_install python3 python3-venv
        BASE_PY=/usr/bin/python3
    fi
    log "aiosmtpd: creating $VENV with $BASE_PY"
    rm -rf "$VENV"
    "$BASE_PY" -m venv "$VENV"
    if "$VENV/bin/pip" install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" &&
        aiosmtpd_ok "$VENV/bin/python"; then
        AIOSMTPD_PY="$VENV/bin/python"
        log "aiosmtpd: installed $AIOSMTPD_VERSION from PyPI"
    else
        log "aiosmtpd: pip install failed, falling back to Debian's python3-aiosmtpd"
        aiosmtpd_any /usr/bin/python3 || apt_install python3-aiosmtpd
        aiosmtpd_any /usr/bin/python3 || die "aiosmtpd: python3-aiosmtpd does not import"
        AIOSMTPD_PY=/usr/bin/python3
        touch "$FALLBACK_MARK"
    fi
fi

# ---------------------------------------------------------------- Prometheus + promtool
PROMETHEUS="$(command -v prometheus || true)"
PROMTOOL="$(command -v promtool || true)"
if [ -z "$PROMETHEUS" ] || [ -z "$PROMTOOL" ]; then
    log "prometheus: not installed"
    # --no-start: the tests run their own server on a port of their choosing; the package's
    # daemon on :9090 would only get in the way.
    apt_install --no-start prometheus
    PROMETHEUS="$(command -v prometheus || echo /usr/bin/prometheus)"
    PROMTOOL="$(command -v promtool || echo /usr/bin/promtool)"
    if [ ! -x "$PROMETHEUS" ] || [ ! -x "$PROMTOOL" ]; then
        die "prometheus: install did not provide both binaries"
    fi
    # If a service manager started the daemon anyway, stop it and keep it from coming back.
    if [ -d /run/systemd/system ] && systemctl is-active --quiet prometheus 2>/dev/null; then
        log "prometheus: stopping the package's systemd service"
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
        log "prometheus: stopping the package's init.d service"
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
    log "prometheus: $("$PROMETHEUS" --version 2>&1 | head -n1)"
else
    log "prometheus: $PROMETHEUS and $PROMTOOL present (ok)"
fi
if port_listening 9090; then
    log "prometheus: note: something listens on :9090; tests must pick their own port"
fi

# ---------------------------------------------------------------- Chromium + chromedriver
# The staff pages are tested in a real browser: Debian's chromium and chromium-driver (never
# a downloaded browser or driver), and a CJK font so the Chinese pages render as text.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    log "chromium: not installed"
    apt_install chromium chromium-driver
else
    log "chromium: /usr/bin/chromium and /usr/bin/chromedriver present (ok)"
fi
if ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
    log "fonts: no CJK font"
    apt_install fonts-wqy-zenhei
fi
# ---------------------------------------------------------------- openssl (test certificates)
# tests/it/tls.rs makes a throw-away certificate for `serve --tls-cert/--tls-key` with it.
OPENSSL="$(command -v openssl || true)"
if [ -z "$OPENSSL" ]; then
    apt_install openssl
    OPENSSL="$(command -v openssl || echo /usr/bin/openssl)"
    [ -x "$OPENSSL" ] || die "openssl: install did not provide the binary"
fi
log "openssl: $("$OPENSSL" version 2>&1 | head -n1) (ok)"
# ---------------------------------------------------------------- container image tests
# dockerd, docker-compose, a debootstrap base image and systemd-analyze (tests/it/image.rs).
IMAGE_ENV=""
if [ "${SLAKEEPER_TEST_SKIP_IMAGE:-}" = "1" ]; then
    log "image: SLAKEEPER_TEST_SKIP_IMAGE=1: docker and the base image are not set up"
else
    IMAGE_ENV="$(bash "$REPO/scripts/test-env-image.sh")" ||
        die "image: set-up failed (SLAKEEPER_TEST_SKIP_IMAGE=1 skips the image tests)"
fi

# ---------------------------------------------------------------- result
tmp="$STATE/env.tmp"
{
    echo "# written by scripts/test-env.sh; source it or read it line by line"
    echo "SLAKEEPER_TEST_PG_URL=$PG_URL"
    echo "SLAKEEPER_TEST_AIOSMTPD=$AIOSMTPD_PY"
    echo "SLAKEEPER_TEST_PROMETHEUS=$PROMETHEUS"
    echo "SLAKEEPER_TEST_PROMTOOL=$PROMTOOL"
    echo "SLAKEEPER_TEST_CHROMIUM=/usr/bin/chromium"
    echo "SLAKEEPER_TEST_CHROMEDRIVER=/usr/bin/chromedriver"
    echo "SLAKEEPER_TEST_OPENSSL=$OPENSSL"
    if [ -n "$IMAGE_ENV" ]; then echo "$IMAGE_ENV"; fi
} >"$tmp"
mv "$tmp" "$STATE/env"
log "wrote $STATE/env:"
sed -n 's/^SLAKEEPER/  SLAKEEPER/p' "$STATE/env"
