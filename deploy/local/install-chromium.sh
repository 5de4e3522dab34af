#!/bin/sh
# Makes sure Debian's Chromium is installed for the console's browser tests (playwright-core drives
# /usr/bin/chromium; no browser is downloaded). Run by `npm test` (pretest) and by the browser tests'
# harness (test/harness/chromium.ts). Quiet and quick when it is present. Installs it from the Debian
# archive when run as root; otherwise says what to install and fails.
set -eu

[ -x /usr/bin/chromium ] && exit 0
echo "install-chromium: /usr/bin/chromium is missing" >&2

if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium: the console's browser tests need it; install it as root and run the tests again:" >&2
  echo "  sudo apt-get install -y chromium   (or: sudo sh deploy/local/install-chromium.sh)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get here; install Chromium at /usr/bin/chromium by other means" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show --no-all-versions chromium >/dev/null 2>&1; then
  apt-get update
fi
if ! apt-get install -y --no-install-recommends chromium; then
  echo "install-chromium: install failed; refreshing the package lists and trying once more" >&2
  apt-get update
  apt-get install -y --no-install-recommends chromium
fi
[ -x /usr/bin/chromium ] || { echo "install-chromium: /usr/bin/chromium still missing after the install" >&2; exit 1; }
echo "install-chromium: installed chromium" >&2
