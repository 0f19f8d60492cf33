# rust:1.63-bookworm stand-in: Debian's rustc (1.63) and cargo.
FROM debian:bookworm
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates rustc cargo libc6-dev; \
    update-ca-certificates; \
    rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo
