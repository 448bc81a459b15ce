# syntax=docker/dockerfile:1.7
# One image per service, from one Dockerfile:
#   docker build --build-arg SERVICE=user-service --build-arg PORT=3001 -t user-service .
# SERVICE is the workspace crate and binary name; PORT its port from docs/CONTRACTS.md
# (user-service 3001, order-service 3002, notification-service 3003).
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe from the manifests)
# -> builder (dependencies cooked in their own layer, then the sources) -> runtime (distroless).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<service>" >&2; exit 1; }
# Dependencies only: this layer is rebuilt when Cargo.toml/Cargo.lock change, not the sources.
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --profile dist --locked --package "${SERVICE}" --recipe-path recipe.json
COPY . .
# --profile dist: release + thin LTO, one codegen unit, stripped (Cargo.toml).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --profile dist --locked --package "${SERVICE}" --bin "${SERVICE}" \
    && mkdir -p /out/app/config /out/data \
    && install -m 0555 "target/dist/${SERVICE}" "/out/app/${SERVICE}" \
    && ln -s "${SERVICE}" /out/app/entrypoint \
    && if [ -d "${SERVICE}/config" ]; then cp -R "${SERVICE}/config/." /out/app/config/; fi

# distroless/cc: glibc, libgcc, CA certificates and tzdata, no shell, no package manager.
FROM ${RUNTIME_IMAGE} AS runtime
ARG SERVICE
ARG PORT
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="${SERVICE}" \
      org.opencontainers.image.description="${SERVICE} of the microservices platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/microservices-platform/microservices-platform" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
WORKDIR /app
# Binary and config are root-owned and read-only; only /app/data (a volume) is written, so the
# container runs with a read-only root filesystem (plus a tmpfs at /tmp if anything needs one).
COPY --from=builder /out/app/ /app/
COPY --from=builder --chown=65532:65532 /out/data/ /app/data/
ENV CONFIG_DIR=/app/config
VOLUME ["/app/data"]
EXPOSE ${PORT}
USER 65532:65532
# No HEALTHCHECK: distroless has no shell, curl or wget to run one, and a probe mode in the
# binary would be one more thing to keep in step. Kubernetes probes /health and /ready over
# HTTP, and docker-compose.yml checks the services' dependencies instead.
ENTRYPOINT ["/app/entrypoint"]
