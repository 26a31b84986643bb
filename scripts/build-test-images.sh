#!/bin/sh
# Build orc's Docker test images locally from busybox-static (no registry needed).
# Usage: scripts/build-test-images.sh [TAG] [--remove]   (images: orc-test/<name>:TAG)
set -e
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" -m tests.images "$@"
