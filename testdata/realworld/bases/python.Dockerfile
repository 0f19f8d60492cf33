# python:3.11-slim stand-in: Debian's python3 (3.11) with pip and venv.
FROM debian:bookworm-slim
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates python3 python3-pip python3-venv; \
    update-ca-certificates; \
    ln -s /usr/bin/python3 /usr/local/bin/python; \
    rm -rf /var/lib/apt/lists/*
# Debian marks its python "externally managed" (PEP 668); the official image's pip installs into
# the system site-packages, as this does.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONUNBUFFERED=1
CMD ["python3"]
