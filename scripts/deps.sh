#!/bin/sh
# Install the Debian 12 packages portico needs to build, test and run.
# Only what is missing is installed; apt-get update runs only then.
set -e
pkgs="build-essential pkg-config libzmq3-dev libmsgpack-dev liblmdb-dev
lmdb-utils libinih-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
libcmocka-dev haproxy supervisor openssl netcat-openbsd python3 python3-pytest python3-zmq python3-msgpack
python3-yaml"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" != 0 ]; then
	echo "deps: run as root (or install:$missing)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
