# node:18-bookworm-slim stand-in: Debian's nodejs (18) and npm.
FROM debian:bookworm-slim
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates nodejs npm; \
    update-ca-certificates; \
    rm -rf /var/lib/apt/lists/*
# Node keeps its own CA list; a local CA (a proxy's) is only seen through this variable.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
