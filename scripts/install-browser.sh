#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver from Debian's packages for the browser test; idempotent.
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "browser: already installed ($(chromium --version 2>/dev/null || echo chromium))"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "browser: run as root or install sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi

echo "browser: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh container has no package lists; refresh them only when the candidates are unknown.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
chromium --version
chromedriver --version
