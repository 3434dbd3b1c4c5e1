#!/bin/sh
# Build portico's image without any registry: a root folder holding the four
# daemons, porticoctl, HAProxy, the shared libraries ldd lists for them and a
# minimal /etc, packed with tar and fed to `podman import`.  The Containerfile
# makes the same image from debian:12 for those who can pull it.
#
#   scripts/image.sh [-b BINDIR] [-k] NAME:TAG
#
# -b: where the daemons are (default build/bin; the ASan build works too:
# its libraries are found by ldd like the others).  -k: keep the root
# folder (printed) instead of removing it.  Prints the image's ID.
set -eu
# The image's files are for its portico user too, whatever our umask.
umask 022

bin=build/bin
keep=0
while getopts b:k o; do
	case $o in
	b) bin=$OPTARG ;;
	k) keep=1 ;;
	*) echo "usage: $0 [-b BINDIR] [-k] NAME:TAG" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { echo "usage: $0 [-b BINDIR] [-k] NAME:TAG" >&2; exit 2; }
name=$1

daemons="allocd watcherd renderd applyd"
for d in $daemons porticoctl; do
	[ -x "$bin/$d" ] || { echo "image: $bin/$d: not built (make)" >&2; exit 1; }
done
# busybox gives the pods a shell for portico-pod (scripts/portico-pod.sh,
# what each pod runs) and for an operator's `kubectl exec`.
for f in /usr/sbin/haproxy /bin/busybox; do
	[ -x "$f" ] || { echo "image: $f missing (scripts/deps.sh)" >&2; exit 1; }
done

root=$(mktemp -d /tmp/portico-image-XXXXXX)
cleanup() { [ $keep = 1 ] || rm -rf "$root"; }
trap cleanup EXIT

mkdir -p "$root/usr/sbin" "$root/usr/bin" "$root/bin" "$root/etc/portico" \
    "$root/run/portico" "$root/var/lib/portico" "$root/tmp" "$root/dev" \
    "$root/proc" "$root/sys"
chmod 1777 "$root/tmp"
for d in $daemons; do
	install -m 0755 "$bin/$d" "$root/usr/sbin/$d"
done
install -m 0755 "$bin/porticoctl" "$root/usr/bin/porticoctl"
install -m 0755 /usr/sbin/haproxy "$root/usr/sbin/haproxy"
install -m 0755 "$(dirname "$0")/portico-pod.sh" "$root/usr/bin/portico-pod"
install -m 0755 /bin/busybox "$root/bin/busybox"
for t in sh cat cp mv rm mkdir chmod hostname ls wget; do
	ln -s busybox "$root/bin/$t"
done

# Every library the binaries load, at the path the loader looks for it
# (the dynamic loader itself is the line without "=>").
for f in "$root"/usr/sbin/* "$root"/usr/bin/porticoctl; do
	ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
# The users: root for applyd (HAProxy's master binds the ports), portico
# for the other daemons, haproxy for HAProxy's workers (applyd's default
# [proxy.NAME] user when it exists).  Fixed ids, as a securityContext
# names them.
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
portico:x:999:999:portico:/nonexistent:/usr/sbin/nologin
haproxy:x:998:998:haproxy:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
portico:x:999:
haproxy:x:998:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
: > "$root/etc/resolv.conf"
# The system trust store, for a PKS whose [pks] ca_file is left empty.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	mkdir -p "$root/etc/ssl/certs"
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
chown 999:999 "$root/var/lib/portico"
chmod 0700 "$root/var/lib/portico" "$root/run/portico"

version=${name##*:}
tar -C "$root" --numeric-owner -cf - . |
    podman import --quiet \
	--change "LABEL org.opencontainers.image.title=portico" \
	--change "LABEL org.opencontainers.image.version=$version" \
	--change "ENV PATH=/usr/sbin:/usr/bin:/bin" \
	--change "CMD [\"/usr/bin/porticoctl\", \"-h\"]" \
	- "$name"
[ $keep = 0 ] || echo "image: root folder kept in $root" >&2
