#!/usr/bin/env bash
# Set up .venv for running and testing sdworker on this machine (CPU).
#
# torch is installed first and pinned, so that resolving the project never swaps it for another
# build; the Docker image installs the CUDA build instead. Extras: dev (lint tools), test (the
# test suite, the wheel build), s3 (uploads; its tests run against a local fake S3).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[dev,test,s3]"

# The browser tests (tests/browser) drive Debian's chromium through Playwright, which never
# downloads a browser of its own.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
