# syntax=docker/dockerfile:1
#
# The Quiver image: `quiver-server` (the entry point) and the `quiver` command
# line, on Debian slim, as an unprivileged user. Configure it with QUIVER_*
# variables (README.md, "Configuration") or a TOML file named by QUIVER_CONFIG;
# docs/operations.md, "Container image", describes its volumes and defaults.
#
#   docker build -t quiver .
#
# The cache mounts need BuildKit (the default builder of Docker 23 and later)
# or Buildah/Podman; base images are named in full for the latter, which do
# not expand short names.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry and target directory live in cache mounts, so a rebuild after
# a source change compiles only the workspace crates. The binaries are copied
# out inside the same step: a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --workspace --bins \
 && install -D -m 0755 target/release/quiver-server /out/quiver-server \
 && install -D -m 0755 target/release/quiver /out/quiver

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="quiver" \
      org.opencontainers.image.description="Quiver: an Arrow Flight cache cluster for Parquet in object storage" \
      org.opencontainers.image.licenses="Apache-2.0"

# ca-certificates: S3 and TLS peers are verified against the system roots.
# Unpinned on purpose: Debian stable only ships security and bug fixes, and a
# pin would break the build at the package's next security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid, so volume ownership and Kubernetes' runAsUser/fsGroup can name
# it. /var/lib/quiver/data holds the embedded default's Parquet files (used
# only when no source is configured) and /var/lib/quiver/cache the disk tier;
# /etc/quiver/secrets is where tokens are mounted.
RUN groupadd --system --gid 10001 quiver \
 && useradd --system --uid 10001 --gid quiver --home-dir /var/lib/quiver \
      --no-create-home --shell /usr/sbin/nologin quiver \
 && install -d -o quiver -g quiver -m 0750 /var/lib/quiver /var/lib/quiver/data /var/lib/quiver/cache \
 && install -d -o quiver -g quiver -m 0700 /etc/quiver /etc/quiver/secrets

COPY --from=build /out/quiver-server /out/quiver /usr/local/bin/
COPY deploy/docker/quiver-ready /usr/local/bin/quiver-ready

# Listening on every interface is refused without tokens (auth.tokens_file or
# auth.admin_token_file), unless QUIVER_INSECURE=true says the network is
# trusted. Environment variables win over the config file, so a file mounted
# with QUIVER_CONFIG cannot move these four; set the variables instead.
ENV QUIVER_LISTEN=0.0.0.0:50051 \
    QUIVER_ADMIN_LISTEN=0.0.0.0:9090 \
    QUIVER_DATA_DIR=/var/lib/quiver/data \
    QUIVER_CACHE_DISK_DIR=/var/lib/quiver/cache \
    QUIVER_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/quiver
VOLUME ["/var/lib/quiver/data", "/var/lib/quiver/cache"]
EXPOSE 50051 9090

# Ready means serving: a node answers 503 while it starts and while it drains.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["quiver-ready"]

# SIGTERM lets running streams finish (up to 30 s) and flushes the disk tier:
# give `docker stop` at least 45 s (`--time 45`, compose's stop_grace_period).
ENTRYPOINT ["quiver-server"]
