#!/bin/bash
# The image's HEALTHCHECK: healthy when `GET /readyz` answers 200 (the database is reachable
# and migrated). The image has no curl; bash's /dev/tcp makes the one request it needs.
# It asks the address slakeeper listens on (SLAKEEPER_LISTEN), 127.0.0.1 for 0.0.0.0 / [::].
set -u
listen="${SLAKEEPER_LISTEN:-127.0.0.1:8080}"
port="${listen##*:}"
host="${listen%:*}"
case "$host" in
"" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;;
\[*\]) host="${host#[}" host="${host%]}" ;;
esac
exec 3<>"/dev/tcp/$host/$port" || { echo "readyz: nothing listens on $host:$port"; exit 1; }
printf 'GET /readyz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 5 status <&3 || { echo "readyz: no answer from $host:$port"; exit 1; }
case "$status" in
"HTTP/1."?" 200 "*) exit 0 ;;
*) echo "readyz: ${status%$'\r'}"; exit 1 ;;
esac
