# iiifsrv: mirrors scripts/setup (Debian packages, a virtual environment, the package, the
# viewers built with Debian's Node.js).

# The viewers (Mirador with the annotation editor, Universal Viewer): npm ci + Vite build.
FROM debian:bookworm-slim AS viewers
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src/viewers
COPY viewers/package.json viewers/package-lock.json ./
RUN npm ci --legacy-peer-deps --ignore-scripts --no-audit --no-fund
COPY viewers ./
RUN npm run build

FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips42 libturbojpeg0 ffmpeg python3 python3-venv ca-certificates curl \
    tesseract-ocr tesseract-ocr-eng tesseract-ocr-lat tesseract-ocr-deu tesseract-ocr-fra fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/iiifsrv
COPY pyproject.toml README.md ./
COPY iiifsrv ./iiifsrv
COPY --from=viewers /src/iiifsrv/static/build ./iiifsrv/static/build
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
