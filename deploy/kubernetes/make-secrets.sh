#!/bin/sh
# Fill deploy/kubernetes/base/secrets/, which base/kustomization.yaml turns
# into the Secrets portico-pks, portico-proof and portico-key-ROLE and the
# ConfigMap portico-bus-pub.  Nothing here is committed (see .gitignore);
# run it once per installation, keep the folder safe, and run it again only
# to rotate (-f: every secret anew, then `kubectl apply -k` restarts every
# pod with them).
#
# The bus's keys are made by `porticoctl keygen` ($PORTICOCTL, or
# porticoctl on PATH; or from the image:
# PORTICOCTL="podman run --rm -v $PWD/deploy/kubernetes/base/secrets:/k -w /k portico porticoctl").
#
#   make-secrets.sh -c PKS_CA_FILE [-d DIR] [-f]
#
# The PKS client secret is read from the environment (PORTICO_PKS_SECRET),
# never from the command line, where `ps` would show it.
set -eu
dir=$(dirname "$0")/base/secrets
ca=
force=0
while getopts c:d:f o; do
	case $o in
	c) ca=$OPTARG ;;
	d) dir=$OPTARG ;;
	f) force=1 ;;
	*) echo "usage: $0 -c PKS_CA_FILE [-d DIR] [-f]" >&2; exit 2 ;;
	esac
done
if [ -z "$ca" ] || [ ! -r "$ca" ]; then
	echo "$0: -c PKS_CA_FILE: the CA of PKS and UAA" >&2
	exit 2
fi
[ -n "${PORTICO_PKS_SECRET+set}" ] ||
    { echo "$0: set PORTICO_PKS_SECRET to the UAA client's secret" >&2; exit 2; }
umask 077
mkdir -p "$dir"
if [ -e "$dir/proof.key" ] && [ $force = 0 ]; then
	echo "$0: $dir/proof.key exists (-f to replace every secret)" >&2
	exit 1
fi
# inih: one line, at most 198 characters; " ;" would start a comment.
case $PORTICO_PKS_SECRET in
*" ;"*|*"
"*) echo "$0: the secret cannot hold \" ;\" or a newline (portico.conf(5))" >&2; exit 2 ;;
esac
rm -f "$dir"/*.key "$dir"/*.pub
printf '\n[pks]\nclient_secret = %s\n' "$PORTICO_PKS_SECRET" > "$dir/pks.conf"
cp "$ca" "$dir/pks-ca.crt"
head -c 32 /dev/urandom > "$dir/proof.key.tmp"
mv "$dir/proof.key.tmp" "$dir/proof.key"
for role in allocd watcherd renderd applyd porticoctl; do
	(cd "$dir" && ${PORTICOCTL:-porticoctl} keygen "$role" .) >/dev/null
done
echo "$0: wrote $dir/pks.conf, pks-ca.crt, proof.key, and a key pair per role"
