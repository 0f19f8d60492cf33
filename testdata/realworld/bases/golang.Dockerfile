# golang:1.19-bookworm stand-in: Debian's golang-go (1.19).
FROM debian:bookworm
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates golang-go; \
    update-ca-certificates; \
    rm -rf /var/lib/apt/lists/*
ENV GOPATH=/go GOFLAGS=-mod=mod GOTOOLCHAIN=local
WORKDIR /go
