# The project's one image: trainer, service and the MLflow server (all from the same distribution).
FROM python:3.11-slim

# Set TORCH_INDEX_URL to PyTorch's CPU-only wheel index for a small image (no CUDA libraries);
# left empty, pip takes the default torch build.
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --index-url "$TORCH_INDEX_URL" "torch>=2.14.1,<2.15" "torchvision>=0.29.1,<0.30"; \
    fi
COPY pyproject.toml README.md ./
COPY trainer ./trainer
COPY service ./service
COPY protos ./protos
RUN pip install . && useradd --create-home --uid 10001 app && mkdir -p /app/data /mlartifacts \
    && chown app /app/data /mlartifacts
USER app

EXPOSE 50051 9090 5000
CMD ["python", "-m", "service"]
