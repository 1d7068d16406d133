# iiifsrv: mirrors scripts/setup (Debian packages, a virtual environment, the package).
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips42 ffmpeg python3 python3-venv ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/iiifsrv
COPY pyproject.toml README.md ./
COPY iiifsrv ./iiifsrv
COPY config ./config
COPY codecs ./codecs
COPY manifests ./manifests
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir '.[samples]'

RUN useradd --system --home /data --shell /usr/sbin/nologin iiif \
 && mkdir -p /data/images /data/state && chown -R iiif /data
USER iiif

ENV IIIFSRV_HOST=0.0.0.0 \
    IIIFSRV_PORT=8182 \
    IIIFSRV_WORKERS=0 \
    IIIFSRV_IMAGES=/data/images \
    IIIFSRV_DATA=/data/state
EXPOSE 8182
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:8182/health || exit 1
CMD ["/opt/venv/bin/iiifsrv", "serve"]
