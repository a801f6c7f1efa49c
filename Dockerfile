# Wingate's image: the static `wingate` binary and the default policies on
# a distroless base, run as a non-root user. docs/deploy.md explains the
# settings below; deploy/deploy_test.go checks them against the code and
# builds the binary exactly as the build stage's `go build` line says.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The default policies: plugins/<name> built into policies/<name>.wasm
# (Go for wasip1; a Rust plugin is skipped when cargo is absent, and none
# is served by default).
RUN go generate ./policies
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/wingate ./cmd/wingate
RUN mkdir -p /out/policies /out/cache && cp policies/policies.json policies/*.wasm /out/policies/

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wingate /wingate
# Baked-in policies; mount a directory over this path to serve others.
COPY --from=build /out/policies /etc/wingate/policies
# The policy compilation cache (os.UserCacheDir is $XDG_CACHE_HOME): the
# only path the server writes; mount an emptyDir here when the root
# filesystem is read-only.
COPY --from=build --chown=65532:65532 /out/cache /cache
ENV WINGATE_ADDR=0.0.0.0:8080 \
    WINGATE_OPS_ADDR=0.0.0.0:8081 \
    WINGATE_POLICY_DIR=/etc/wingate/policies \
    XDG_CACHE_HOME=/cache
# 8080: the public listener (API, /healthz, /readyz). 8081: the operators'
# listener (/metrics, /dashboard, /admin), for Prometheus and operators
# only: never route it from outside.
EXPOSE 8080 8081
USER 65532:65532
ENTRYPOINT ["/wingate", "serve"]
