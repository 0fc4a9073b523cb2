#!/usr/bin/env bash
# Prepare what the container image tests (tests/it/image.rs) need, on a Debian machine, as root.
# Called by scripts/test-env.sh; idempotent like it (a second run on a ready machine only
# checks, in a few seconds).
#
#   - docker.io (dockerd, Debian's docker CLI) and docker-compose from Debian's packages;
#     dockerd started if no daemon answers (vfs storage, no iptables, no bridge: containers
#     use --network host), its log in /var/log/slakeeper-test-dockerd.log.
#   - a base image made locally, never pulled: debootstrap --variant=minbase of this
#     machine's Debian release (the binary under test is built here, so its glibc matches),
#     trimmed like debian:*-slim (no docs, man pages, apt lists), without ca-certificates.
#     The root file system is cached as a tar under /var/cache/slakeeper-test, so a new clone
#     or a docker data reset re-imports it in seconds instead of running debootstrap again.
#   - systemd-analyze (package systemd) for the unit file check.
#
# Prints KEY=VALUE lines for .test-env/env on stdout (everything else goes to stderr):
#   SLAKEEPER_TEST_DOCKER, SLAKEEPER_TEST_BASE_IMAGE, SLAKEEPER_TEST_COMPOSE,
#   SLAKEEPER_TEST_SYSTEMD_ANALYZE
set -euo pipefail

CACHE=/var/cache/slakeeper-test
DOCKERD_LOG=/var/log/slakeeper-test-dockerd.log
export DEBIAN_FRONTEND=noninteractive

log() { printf '[test-env image] %s\n' "$*" >&2; }
die() { printf '[test-env image] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts dockerd)"

APT_UPDATED=0
POLICY_RC_D=/usr/sbin/policy-rc.d
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    # The packages' own init scripts must not start a daemon configured their way (iptables,
    # overlay): we start dockerd ourselves below. policy-rc.d is honoured by invoke-rc.d.
    local ours=0
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# temporary, from slakeeper scripts/test-env-image.sh\nexit 101\n' >"$POLICY_RC_D"
        chmod 755 "$POLICY_RC_D"
        ours=1
    fi
    log "apt-get install -y --no-install-recommends $*"
    local out rc=0
    out="$(mktemp)"
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >"$out" 2>&1 || rc=$?
    if [ "$ours" -eq 1 ]; then rm -f "$POLICY_RC_D"; fi
    if [ "$rc" -ne 0 ]; then
        cat "$out" >&2
        rm -f "$out"
        die "apt-get install $* failed"
    fi
    rm -f "$out"
}

# ---------------------------------------------------------------- packages
need=()
[ -x /usr/bin/docker ] && [ -x /usr/sbin/dockerd ] || need+=(docker.io)
[ -x /usr/bin/docker-compose ] || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}"
fi
# Debian's CLI, whatever else is on PATH: it matches Debian's daemon.
DOCKER=/usr/bin/docker
log "docker: $("$DOCKER" --version), $(/usr/bin/docker-compose --version 2>/dev/null | head -n1)"

# ---------------------------------------------------------------- dockerd
if ! "$DOCKER" info >/dev/null 2>&1; then
    log "dockerd: not answering, starting it (vfs, no iptables, no bridge); log: $DOCKERD_LOG"
    setsid /usr/sbin/dockerd --storage-driver vfs --iptables=false --bridge=none \
        >>"$DOCKERD_LOG" 2>&1 </dev/null &
    for i in $(seq 1 60); do
        if "$DOCKER" info >/dev/null 2>&1; then break; fi
        [ "$i" -eq 60 ] && { tail -n 20 "$DOCKERD_LOG" >&2; die "dockerd did not answer in 30 s"; }
        sleep 0.5
    done
fi
log "dockerd: $("$DOCKER" info --format '{{.ServerVersion}}, storage {{.Driver}}') (ok)"

# ---------------------------------------------------------------- base image
. /etc/os-release
SUITE="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
BASE_IMAGE="slakeeper-test/debian:${SUITE}-minbase"
TARBALL="$CACHE/debian-${SUITE}-minbase.tar"

mirror() {
    # The machine's own Debian mirror (deb822 sources first, then sources.list).
    local m=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        m="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)"
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if [ ! -s "$TARBALL" ]; then
        mkdir -p "$CACHE"
        root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
        # mktemp makes it 0700, and it becomes the image's `/`: every user must traverse it.
        chmod 0755 "$root"
        log "base image: debootstrap --variant=minbase $SUITE from $(mirror) (about a minute)"
        t0=$SECONDS
        if ! debootstrap --variant=minbase "$SUITE" "$root" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1; then
            tail -n 20 "$CACHE/debootstrap.log" >&2
            rm -rf "$root"
            die "debootstrap failed (log: $CACHE/debootstrap.log)"
        fi
        # What debian:*-slim leaves out; apt's caches are of no use in an image.
        rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
            "$root"/usr/share/locale/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
            "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
        [ ! -e "$root/etc/ssl/certs/ca-certificates.crt" ] ||
            die "the base has ca-certificates; the image test needs a base without them"
        tar -C "$root" -cf "$TARBALL.tmp" .
        mv "$TARBALL.tmp" "$TARBALL"
        rm -rf "$root"
        log "base image: root file system cached in $TARBALL in $((SECONDS - t0)) s"
    fi
    log "base image: importing $TARBALL as $BASE_IMAGE"
    "$DOCKER" import --change 'CMD ["/bin/bash"]' "$TARBALL" "$BASE_IMAGE" >/dev/null
fi
log "base image: $BASE_IMAGE (ok)"

echo "SLAKEEPER_TEST_DOCKER=$DOCKER"
echo "SLAKEEPER_TEST_BASE_IMAGE=$BASE_IMAGE"
echo "SLAKEEPER_TEST_COMPOSE=/usr/bin/docker-compose"
echo "SLAKEEPER_TEST_SYSTEMD_ANALYZE=$(command -v systemd-analyze)"
