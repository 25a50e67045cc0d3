#!/usr/bin/env bash
# Everything the test suite needs, on a fresh machine: the package with its test extra, and
# Debian's Chromium for the dashboard's browser tests (Playwright drives /usr/bin/chromium;
# it never downloads a browser of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
