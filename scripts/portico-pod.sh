#!/bin/sh
# portico-pod DAEMON [ARGS...]: start one of portico's daemons in a pod of
# deploy/kubernetes (the image holds this as /usr/bin/portico-pod).
#
# What a pod needs before the daemon runs, from what Kubernetes mounts:
# - /etc/portico/config/portico.conf, the ConfigMap (no secret in it);
# - /etc/portico/pks/pks.conf, if mounted (watcherd): the PKS client secret,
#   joined to a copy of the configuration only this pod's user can read;
# - /etc/portico/key/ROLE.key, if mounted: the bus's key pair of the pod's
#   role (a Secret), and /etc/portico/pub/*.pub, the public keys (a
#   ConfigMap): copied, with the key pair mode 0400, to /run/portico/keys,
#   which [bus] keys names.  Kubernetes mounts a Secret's files
#   group-readable (fsGroup) and portico refuses a key that more than its
#   owner can read, as ssh does.
# - PORTICO_SHARDS, if set (watcherd): the pod is shard <ordinal> of that
#   many, its ordinal the end of its hostname (a StatefulSet's pod
#   portico-watcherd-2 is shard 2).
# Then the daemon replaces this shell, in the foreground, logging to stderr.
set -eu
umask 077
[ $# -ge 1 ] || { echo "usage: portico-pod DAEMON [ARGS...]" >&2; exit 2; }
daemon=$1
shift
case $daemon in
allocd|watcherd|renderd|applyd) ;;
*) echo "portico-pod: $daemon: not a daemon of portico" >&2; exit 2 ;;
esac
run=/run/portico
conf=/etc/portico/config/portico.conf
if [ -d /etc/portico/key ]; then
	rm -rf "$run/keys"
	mkdir -p "$run/keys"
	for f in /etc/portico/key/*.key /etc/portico/pub/*.pub; do
		[ -e "$f" ] && cp -L "$f" "$run/keys/"
	done
	chmod 0400 "$run"/keys/*.key 2>/dev/null || true
	chmod 0444 "$run"/keys/*.pub 2>/dev/null || true
fi
if [ -r /etc/portico/pks/pks.conf ]; then
	cat "$conf" /etc/portico/pks/pks.conf > "$run/portico.conf.new"
	mv "$run/portico.conf.new" "$run/portico.conf"
	conf=$run/portico.conf
fi
if [ "$daemon" = watcherd ] && [ -n "${PORTICO_SHARDS:-}" ]; then
	host=$(hostname)
	set -- -s "${host##*-}/$PORTICO_SHARDS" "$@"
fi
exec "/usr/sbin/$daemon" -d -f "$conf" "$@"
