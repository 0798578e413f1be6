#!/usr/bin/env bash
# Set up a virtualenv with the test extras, make sure mosquitto is installed, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# System parts the suite runs for real: the broker (and mosquitto_passwd), systemd-analyze,
# chromium.
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# Debian's browser for the technician console's tests (never a browser download of its own).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "the tests need: ${missing[*]} (apt-get install ${missing[*]}); install and run again" >&2
        exit 1
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
