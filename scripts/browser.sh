#!/usr/bin/env bash
# The browser step of `make test`: the console's browser test drives Debian's chromium through
# chromedriver. Installs both once, as root, from Debian's packages; a machine that has them
# skips this. Nothing is downloaded from anywhere else.
set -euo pipefail

have() { [ -x /usr/bin/chromium ] && { [ -x /usr/bin/chromedriver ] || [ -x /usr/lib/chromium/chromedriver ]; }; }

if have; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "browser: chromium and chromium-driver are missing; install them (apt-get install chromium chromium-driver) or run make test as root" >&2
  exit 1
fi
echo "browser: installing Debian's chromium and chromium-driver (once)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; then
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null
fi
have || { echo "browser: chromium or chromedriver still missing after the install" >&2; exit 1; }
