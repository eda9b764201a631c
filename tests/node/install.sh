#!/usr/bin/env bash
# Install the npm packages of the Node SDK test (pinned by package-lock.json).
# Called from .ci/run. Without node there is nothing to do (the pytest test skips).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1; then
  echo "tests/node: node not found, skipping npm install" >&2
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  # Debian's nodejs ships without npm (NodeSource's bundles it, so it is not in
  # .ci/apt-packages-node.txt, where it would conflict).
  if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
  else
    echo "tests/node: npm not found" >&2
    exit 1
  fi
fi
npm ci --no-audit --no-fund --loglevel=error
