# masflow worker and starter in one small image, for deployments/compose
# and deployments/kubernetes:
#
#   docker build -t masflow/masflow:dev .
#   docker run --rm masflow/masflow:dev -c /etc/masflow/masflow.yaml        # the worker
#   docker run --rm --entrypoint masflow-starter masflow/masflow:dev status  # the starter
#
# The backup step runs pg_dump and pg_restore, which must be at least the
# major version of both database servers: Debian 13's client is
# PostgreSQL 17. For PostgreSQL 18 servers, install postgresql-client-18
# from the PostgreSQL project's Debian repository in the runtime stage.

ARG GO_IMAGE=golang:1.26.8-trixie
ARG RUNTIME_IMAGE=debian:13.1-slim

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Pure Go (pgx, the Temporal SDK): a static binary, no libc dependency.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/ ./worker ./starter

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 masflow \
 && useradd --system --uid 10001 --gid masflow --home-dir /var/lib/masflow --shell /usr/sbin/nologin masflow \
 && install -d -o masflow -g masflow -m 0750 /var/lib/masflow /var/backups/masflow
COPY --from=build /out/worker /usr/local/bin/masflow-worker
COPY --from=build /out/starter /usr/local/bin/masflow-starter
USER 10001:10001
WORKDIR /var/lib/masflow
# worker.metrics_address (Prometheus /metrics) when set to 0.0.0.0:9464.
EXPOSE 9464
# SIGTERM lets in-flight import calls commit their batch and return.
STOPSIGNAL SIGTERM
ENTRYPOINT ["masflow-worker"]
CMD ["-c", "/etc/masflow/masflow.yaml"]
