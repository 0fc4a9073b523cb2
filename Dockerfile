# slakeeper's container image: the release binary on a slim Debian base, run as a non-root
# user, with the shipped workflows and a HEALTHCHECK on /readyz. See docs/operations.md,
# "Deploying".
#
#   docker build -t slakeeper .
#       compiles the binary in a Rust image (stage `build`), then the image (stage `release`).
#   cargo build --release --locked && docker build --target prebuilt -t slakeeper .
#       puts the binary you built in the image instead (build it on Debian 12 or an older
#       glibc than the base's 2.36, or it will not start).
#
# --build-arg BASE=… replaces the base (the project's tests build from one made locally by
# debootstrap; nothing is pulled). The image needs nothing from it but a libc and bash (the
# health check): no ca-certificates (https:// endpoints fall back to the Mozilla roots built
# into the binary; install ca-certificates in a derived image to trust your own CA).
#
# Every stage works with the classic builder and with BuildKit; `--target prebuilt` never
# touches the Rust image.

ARG BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1.94-slim-bookworm

# ---------------------------------------------------------------- the runtime, no binary yet
FROM ${BASE} AS runtime
# A fixed uid/gid, so volumes and secrets can be owned by it on the host.
RUN groupadd --system --gid 10001 slakeeper \
 && useradd --system --uid 10001 --gid slakeeper --home-dir /var/lib/slakeeper \
        --no-create-home --shell /usr/sbin/nologin slakeeper \
 && mkdir -p /var/lib/slakeeper \
 && chown slakeeper:slakeeper /var/lib/slakeeper \
 && chmod 0750 /var/lib/slakeeper
# Owned by root: the service reads its definitions, it never writes them. Mount your own
# over /etc/slakeeper/workflows (read-only is fine).
COPY workflows /etc/slakeeper/workflows
COPY deploy/docker/healthcheck.sh /usr/local/bin/slakeeper-healthcheck
# 0.0.0.0: reachable from outside the container, so `serve` requires an API token
# (SLAKEEPER_API_TOKEN or SLAKEEPER_API_TOKEN_FILE) unless --allow-unauthenticated.
ENV SLAKEEPER_DATABASE_URL=sqlite:///var/lib/slakeeper/slakeeper.db \
    SLAKEEPER_WORKFLOWS=/etc/slakeeper/workflows \
    SLAKEEPER_LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
WORKDIR /var/lib/slakeeper
# The SQLite database (the default) lives here; with PostgreSQL nothing is written locally.
VOLUME ["/var/lib/slakeeper"]
EXPOSE 8080
USER slakeeper:slakeeper
# Ready = the database is reachable and migrated. A `--role worker` container answers it too
# (it serves /healthz, /readyz and /metrics on SLAKEEPER_LISTEN).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/slakeeper-healthcheck"]
ENTRYPOINT ["/usr/local/bin/slakeeper"]
CMD ["serve"]

# ---------------------------------------------------------------- a binary built beforehand
FROM runtime AS prebuilt
ARG BINARY=target/release/slakeeper
COPY ${BINARY} /usr/local/bin/slakeeper

# ---------------------------------------------------------------- the binary built here
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY migrations migrations
COPY src src
# The release profile strips debug info itself (Cargo.toml, `strip = "debuginfo"`).
RUN cargo build --release --locked --bin slakeeper

# ---------------------------------------------------------------- the default target
FROM runtime AS release
COPY --from=build /src/target/release/slakeeper /usr/local/bin/slakeeper
