#!/usr/bin/env bash
# setup.sh: installs the Debian 12 packages vsoc needs to build and test. Installs only what
# is missing, so a second run is quick. Run as root (or with sudo available).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libyaml-dev libjansson-dev libpcre2-dev libssl-dev
      clang libclang-rt-14-dev llvm jq libsqlite3-dev sqlite3
      libmosquitto-dev mosquitto mosquitto-clients librdkafka-dev kcat openssl
      libhiredis-dev redis-server libmicrohttpd-dev curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
