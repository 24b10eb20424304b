# syntax=docker/dockerfile:1
# modelzoo serving image: multi-stage (builder makes a venv, runtime copies it), non-root.
#
#   docker build -t modelzoo:0.1.0 .                                   # CPU torch (default)
#   docker build --build-arg TORCH_VARIANT=cu128 -t modelzoo:0.1.0-cu128 .   # CUDA torch
#   docker run --rm -p 8000:8000 modelzoo:0.1.0
#
# TORCH_VARIANT names a PyTorch wheel index, https://download.pytorch.org/whl/<variant>:
# cpu (default), or a CUDA build that index has for torch 2.13.0 (e.g. cu126, cu128, cu130).
# CUDA wheels carry their CUDA runtime; the host needs only the NVIDIA driver and
# container toolkit (docker run --gpus all ...).
# Checked offline by `make lint-docker` (hadolint) and tests/deploy (no Docker needed).

FROM python:3.11.14-slim-bookworm AS builder

ARG TORCH_VARIANT=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/venv

COPY pyproject.toml constraints.txt README.md ./
COPY app/ app/
COPY models/ models/

# The project without dev extras; constraints.txt pins every version (torch==2.13.0 matches
# the +cpu / +cuXXX builds, which outrank PyPI's 2.13.0 on the PyTorch index).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --extra-index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        -c constraints.txt .


FROM python:3.11.14-slim-bookworm AS runtime

# MODELZOO_ARTIFACTS_DIR: the package lives in site-packages, so point it at the copied
# artifacts. MODELZOO_HOST/PORT/WORKERS are read by the CMD below (`modelzoo serve`).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MODELZOO_ARTIFACTS_DIR=/app/artifacts \
    MODELZOO_HOST=0.0.0.0 \
    MODELZOO_PORT=8000 \
    MODELZOO_WORKERS=1

RUN groupadd --system --gid 10001 modelzoo \
    && useradd --system --uid 10001 --gid modelzoo --create-home --home-dir /home/modelzoo \
        --shell /usr/sbin/nologin modelzoo

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Root-owned and read-only for the service user; mount other artifacts over /app/artifacts.
COPY artifacts/ /app/artifacts/

USER 10001:10001
EXPOSE 8000

# Healthy once every configured model is loaded (/readyz 200); python, since slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('MODELZOO_PORT', '8000'), timeout=4)"]

# exec: uvicorn becomes PID 1 and gets SIGTERM. Each worker process loads every model.
CMD ["sh", "-c", "exec modelzoo serve --host \"${MODELZOO_HOST}\" --port \"${MODELZOO_PORT}\" --workers \"${MODELZOO_WORKERS}\""]
