# promshard container image: a static Go binary on distroless, run as nonroot.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg REVISION=$(git rev-parse HEAD) -t promshard .

FROM golang:1.26 AS builder
WORKDIR /src
# Dependencies first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
ARG BUILD_USER=docker
RUN BUILD_DATE="$(date -u +%Y%m%d-%H:%M:%S)" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w \
      -X github.com/prometheus/common/version.Version=${VERSION} \
      -X github.com/prometheus/common/version.Revision=${REVISION} \
      -X github.com/prometheus/common/version.Branch=${BRANCH} \
      -X github.com/prometheus/common/version.BuildUser=${BUILD_USER} \
      -X github.com/prometheus/common/version.BuildDate=${BUILD_DATE}" \
    -o /out/promshard ./cmd/promshard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/promshard /promshard
USER 65532:65532
# 9090: web (metrics, probes, API, status page); 7946: gossip, TCP and UDP.
EXPOSE 9090 7946 7946/udp
ENTRYPOINT ["/promshard"]
CMD ["run"]
