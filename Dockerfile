# cxkv server image: a static binary (no cgo) on distroless, running as a
# non-root user. Build with the version stamped in:
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t cxkv .
#
# Ports: 7001 clients (gRPC, with grpc.health.v1), 7101 peers (Raft, when
# CXKV_PEER_ADDR or CXKV_PEER_LISTEN_ADDR + CXKV_PEER_ADVERTISE_ADDR give it;
# otherwise peers share 7001), 9101 /metrics, /livez, /readyz. Data in /var/lib/cxkv (a volume). Every server flag can
# be set as an environment variable (CXKV_ID, CXKV_CLUSTER, ...).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/cxkv/cxkv/raftnode.version=${VERSION} -X github.com/cxkv/cxkv/raftnode.revision=${REVISION}" \
      -o /out/cxkv ./cmd/cxkv \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cxkv /usr/local/bin/cxkv
# The data dir must belong to the non-root user before a volume is mounted
# on it, so a fresh named volume inherits that ownership.
COPY --from=build --chown=65532:65532 /out/data /var/lib/cxkv
USER 65532:65532
ENV CXKV_DATA_DIR=/var/lib/cxkv \
    CXKV_LISTEN_ADDR=0.0.0.0:7001 \
    CXKV_METRICS_ADDR=0.0.0.0:9101 \
    CXKV_LOG_FORMAT=json
VOLUME /var/lib/cxkv
EXPOSE 7001 7101 9101
ENTRYPOINT ["/usr/local/bin/cxkv"]
CMD ["server"]
