# The project's one image: trainer, service and the MLflow server (all from the same distribution).
# BASE_IMAGE: the official Python image by default; any Debian-like image whose `python` is 3.11 or
# 3.12 with the venv module will do.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes torch and torchvision from PyTorch's
# CPU-only wheel index: no CUDA libraries, an image about 4 GB smaller. Left empty, pip installs the
# default torch build, which carries CUDA.
ARG TORCH_INDEX_URL=""

# GIT_PYTHON_REFRESH: the image has no git, so MLflow records no commit, and says nothing about it.
# MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR: a container's log is no terminal to draw progress bars on.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/mnist37 \
    PATH=/opt/mnist37/bin:$PATH \
    GIT_PYTHON_REFRESH=quiet \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false

# Secrets arrive as files (compose `secrets:`). For each variable below, VAR_FILE names the file that
# holds VAR, the official images' convention, so passwords stay off command lines and out of
# `docker inspect`.
RUN printf '%s\n' \
      '#!/bin/sh' \
      'set -eu' \
      'for name in PGPASSWORD MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_TRACKING_PASSWORD; do' \
      '  eval "file=\${${name}_FILE:-}"' \
      '  if [ -n "$file" ]; then export "$name=$(cat "$file")"; fi' \
      'done' \
      'exec "$@"' \
      > /usr/local/bin/secrets-to-env \
    && chmod 755 /usr/local/bin/secrets-to-env \
    && useradd --create-home --uid 10001 app \
    && python -m venv "$VIRTUAL_ENV"

RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --index-url "$TORCH_INDEX_URL" "torch>=2.14.1,<2.15" "torchvision>=0.29.1,<0.30"; \
    fi

# Dependencies first, from pyproject.toml alone, so a change to the code reuses this (largest) layer.
# MLflow's auth extra too: the compose file runs the MLflow server with basic authentication.
WORKDIR /app
COPY pyproject.toml ./
RUN python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
      print("\n".join(d.replace("mlflow==", "mlflow[auth]==") for d in deps))' > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY protos ./protos
COPY trainer ./trainer
COPY service ./service
RUN pip install --no-deps . \
    && mkdir -p /app/data /mlartifacts \
    && chown app /app/data /mlartifacts
USER app

EXPOSE 50051 8080 9090 5000
ENTRYPOINT ["secrets-to-env"]
CMD ["python", "-m", "service"]
