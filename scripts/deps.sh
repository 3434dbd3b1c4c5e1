#!/bin/sh
# Install the Debian 12 packages portico needs to build, test and run.
# Only what is missing is installed; apt-get update runs only then.
set -e
# podman, runc and catatonit run the pod tests (make image, podman kube
# play; crun, podman's default runtime, does not start containers on these
# machines: tests/pods/containers.conf picks runc); busybox-static is the
# image's shell.
# nginx is the binary (nginx-light and nginx-core are metapackages that
# pull in modules we do not want); libnginx-mod-stream is the stream {}
# module with ssl_preread, loaded from /usr/lib/nginx/modules.
pkgs="build-essential pkg-config libzmq3-dev libmsgpack-dev liblmdb-dev
lmdb-utils libinih-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
libcmocka-dev libssl-dev haproxy nginx libnginx-mod-stream supervisor openssl
clang libclang-rt-14-dev
netcat-openbsd python3 python3-pytest python3-zmq python3-msgpack
python3-yaml python3-pytest-xdist python3-pytest-timeout libmicrohttpd-dev prometheus mandoc man-db
podman runc catatonit busybox-static"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
# The unprivileged user the daemons can run as (etc/supervisord.conf's
# user=, tests/e2e/test_privilege.py): a system user and group, no home,
# no shell.
if [ "$(id -u)" = 0 ] && ! getent passwd portico >/dev/null; then
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
	    --shell /usr/sbin/nologin portico
fi
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" != 0 ]; then
	echo "deps: run as root (or install:$missing)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# The nginx package starts the distribution's own nginx (port 80, the
# default site) from its maintainer scripts.  portico runs nginx instances
# of its own, each from applyd, and this may be a shared machine: keep the
# package's service from ever starting (prometheus's too: the tests run
# their own, on a port of their own).  A policy-rc.d that denies every
# start, for the time of the install, is Debian's way; one that is already
# there is left as it is.
policy=/usr/sbin/policy-rc.d
case " $missing " in
*" nginx "*|*" prometheus "*)
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# portico deps.sh, for one install\nexit 101\n' \
		    > "$policy"
		chmod 755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	;;
esac
new_services=""
for p in $missing; do
	case $p in
	nginx) new_services="$new_services nginx" ;;
	prometheus) new_services="$new_services prometheus prometheus-node-exporter" ;;
	esac
done

apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing

# Not at boot either, whatever the init system.  Only the service this
# script just installed is touched; nothing is stopped by name.
for s in $new_services; do
	if [ -d /run/systemd/system ]; then
		systemctl disable --now "$s.service" >/dev/null 2>&1 || true
	elif command -v update-rc.d >/dev/null; then
		update-rc.d "$s" disable >/dev/null 2>&1 || true
	fi
done
