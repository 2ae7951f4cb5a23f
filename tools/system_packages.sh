#!/usr/bin/env bash
# Make sure the Debian packages the test suite drives are installed: install the missing ones (as
# root, or through passwordless sudo), or say exactly which to install and stop.
# Usage: tools/system_packages.sh PACKAGE...
set -euo pipefail

missing=()
for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "system_packages: the tests need the Debian packages ${missing[*]} (or their equivalents" \
        "on this system); install them, then run the tests again" >&2
    exit 1
fi
if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "system_packages: the tests need these Debian packages: ${missing[*]}." \
        "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "system_packages: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
