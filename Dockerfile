# syntax=docker/dockerfile:1
# ganaug image: the API (`ganaug serve`, the default command) and the training worker
# (`ganaug worker`) run from this one image; see docker-compose.yml.

# --- builder: a virtual environment with ganaug and its pinned dependencies ---------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# pyproject.toml names README.md as the package readme, so both are needed to build.
COPY pyproject.toml README.md ./
COPY ganaug ./ganaug
COPY core ./core
COPY service ./service
COPY workers ./workers
COPY training ./training
COPY models ./models
# torch, torchvision and the rest come from pyproject's pins; the cache mount keeps the
# multi-GB wheels between builds without putting them in a layer.
RUN --mount=type=cache,target=/root/.cache/pip pip install .

# --- runtime: the venv only, run as an unprivileged user ---------------------------------
FROM python:3.11-slim AS runtime

RUN groupadd --system --gid 10001 ganaug \
    && useradd --system --uid 10001 --gid ganaug --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin ganaug \
    && mkdir -p /app /data \
    && chown ganaug:ganaug /app /data

COPY --from=builder /opt/venv /opt/venv

ENV GANAUG_DATA_DIR=/data \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
USER ganaug
EXPOSE 8000

# Liveness of the API; compose turns it off for the worker, which serves no HTTP.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["ganaug", "serve", "--host", "0.0.0.0", "--port", "8000"]
