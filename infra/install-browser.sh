#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium and its WebDriver, which
# tests/python/test_status_page.py drives to render the admin status page.
# Idempotent: does nothing when /usr/bin/chromium and chromedriver are
# already there.
set -euo pipefail

if [ -x /usr/bin/chromium ] && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
