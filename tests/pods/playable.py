"""Pods that `podman kube play` runs, made from deploy/kubernetes.

Podman 4.3 plays Pods and Deployments but not StatefulSets or DaemonSets,
and its Secret volumes are unreliable (tests/pods/README.md says what else differs). The manifests
a user applies stay real kinds; the pod tests play the pod template of each
workload, taken from `kubectl kustomize deploy/kubernetes` (so a change to
the manifests is what the tests run), with only what a test must change:

- the image: the test's own, never pulled (imagePullPolicy: Never);
- the ConfigMap: the kustomized one, renamed for the test, its
  portico.conf given the test's addresses (ini_override);
- each Secret volume: a hostPath folder holding the kustomized Secret's
  files (decoded, root's, group fsGroup, 0440), written by secret_dir();
- each hostPath volume: a folder of the test's instead of the node's;
- each emptyDir: a folder of the test's for that pod (podman 4.3 makes an
  emptyDir a named volume shared by every pod that names it alike);
- each volumeClaimTemplate of a StatefulSet: a claim by a name of the
  test's (podman makes it a named volume, kept across plays);
- hostNetwork, where the test needs it, names for the Services (an
  /etc/hosts of the test's: podman ignores hostAliases there), and the
  hostname Kubernetes gives a StatefulSet's pod (<name>-<ordinal>).

    python3 tests/pods/playable.py DIR KIND/NAME    # the pod template, as a Pod
"""

import base64
import configparser
import copy
import io
import os
import subprocess
import sys

import yaml

KUBECTL = "/usr/bin/kubectl"


def kustomize(dir):
    """The documents `kubectl kustomize dir` makes (offline)."""
    out = subprocess.run([KUBECTL, "kustomize", dir], check=True,
                         capture_output=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs, kind, name):
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise KeyError("%s/%s not in the manifests" % (kind, name))


def find_prefix(docs, kind, prefix):
    """The one kind whose name is prefix, or prefix-<hash> (kustomize's
    generators append a hash of the content)."""
    got = [d for d in docs if d["kind"] == kind and
           (d["metadata"]["name"] == prefix or
            d["metadata"]["name"].startswith(prefix + "-"))]
    if len(got) != 1:
        raise KeyError("%s %s*: %d found" % (kind, prefix, len(got)))
    return got[0]


def secret_dir(docs, name, dir, gid=0):
    """Write the kustomized Secret name's files into dir, as Kubernetes
    mounts them for a pod whose fsGroup is gid: root's, group gid, mode
    0440 (the manifests' defaultMode). Returns dir."""
    sec = find_prefix(docs, "Secret", name)
    os.makedirs(dir, mode=0o750, exist_ok=True)
    os.chown(dir, 0, gid)
    os.chmod(dir, 0o750)
    for key, val in (sec.get("data") or {}).items():
        path = os.path.join(dir, key)
        if os.path.exists(path):
            os.chmod(path, 0o600)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(base64.b64decode(val))
        os.chown(path, 0, gid)
        os.chmod(path, 0o440)
    return dir


def ini_override(text, over):
    """portico.conf text with over = {section: {key: value or None}} applied
    (None removes the key). Comments are dropped; sections keep their order."""
    cp = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"),
                                   inline_comment_prefixes=None, strict=True)
    cp.optionxform = str
    cp.read_string(text)
    for sect, kv in over.items():
        if not cp.has_section(sect):
            cp.add_section(sect)
        for k, v in kv.items():
            if v is None:
                cp.remove_option(sect, k)
            else:
                cp.set(sect, k, str(v))
    out = io.StringIO()
    cp.write(out)
    return out.getvalue()


def configmap(docs, name, new_name, over=None):
    """The kustomized ConfigMap name (or name-<hash>) as new_name, its
    portico.conf changed by over (ini_override)."""
    cm = copy.deepcopy(find_prefix(docs, "ConfigMap", name))
    meta = {"name": new_name}
    cm["metadata"] = meta
    if over:
        cm["data"]["portico.conf"] = ini_override(cm["data"]["portico.conf"], over)
    return cm


def pod(docs, kind, name, pod_name, image, configmaps=None, secrets=None,
        hostpaths=None, claims=None, empty_dirs=None, host_network=None,
        host_aliases=None, command=None, hostname=None):
    """The pod template of kind/name as a Pod called pod_name.

    configmaps: {kustomized ConfigMap name prefix: name in the play};
    secrets: {Secret name prefix: host folder} (see secret_dir);
    hostpaths: {path on the node: host folder of the test};
    claims: {volumeClaimTemplate name: claim name};
    empty_dirs: {emptyDir volume name: host folder of this pod's own};
    command: {container: argv} to replace a container's command;
    host_aliases: (path, {ip: [names]}): the pod's /etc/hosts, written there;
    hostname: the pod's (a StatefulSet's pod is called <name>-<ordinal>,
    and its hostname says so)."""
    wl = find(docs, kind, name)
    tmpl = copy.deepcopy(wl["spec"]["template"])
    spec = tmpl["spec"]
    for c in spec.get("initContainers", []) + spec["containers"]:
        c["image"] = image
        c["imagePullPolicy"] = "Never"
        if command and c["name"] in command:
            c["command"] = list(command[c["name"]])
    vols = []
    for v in spec.get("volumes", []):
        if "configMap" in v:
            src = v["configMap"]["name"]
            for prefix, new in (configmaps or {}).items():
                if src == prefix or src.startswith(prefix + "-"):
                    v["configMap"]["name"] = new
                    break
            else:
                raise KeyError("configMap %s: no name for it in the play" % src)
        elif "secret" in v:
            src = v["secret"]["secretName"]
            for prefix, folder in (secrets or {}).items():
                if src == prefix or src.startswith(prefix + "-"):
                    v = {"name": v["name"],
                         "hostPath": {"path": folder, "type": "Directory"}}
                    break
            else:
                raise KeyError("secret %s: no folder for it in the play" % src)
        elif "emptyDir" in v:
            # podman 4.3 makes an emptyDir a named volume called after it,
            # shared by every pod that names one alike: a folder instead
            if v["name"] not in (empty_dirs or {}):
                raise KeyError("emptyDir %s: no folder for it in the play" % v["name"])
            v = {"name": v["name"],
                 "hostPath": {"path": empty_dirs[v["name"]], "type": "Directory"}}
        elif "hostPath" in v:
            path = v["hostPath"]["path"]
            if path not in (hostpaths or {}):
                raise KeyError("hostPath %s: no folder for it in the play" % path)
            v["hostPath"] = {"path": hostpaths[path], "type": "Directory"}
        vols.append(v)
    for t in wl["spec"].get("volumeClaimTemplates", []):
        vname = t["metadata"]["name"]
        vols.append({"name": vname, "persistentVolumeClaim": {
            "claimName": (claims or {})[vname]}})
    spec["volumes"] = vols
    if host_network is not None:
        spec["hostNetwork"] = bool(host_network)
    if spec.get("hostNetwork"):
        # informational in Kubernetes; podman refuses port mappings there
        for c in spec["containers"]:
            c.pop("ports", None)
    if hostname:
        spec["hostname"] = hostname
    if host_aliases:
        # podman 4.3 ignores hostAliases on the host's network: the pod's
        # /etc/hosts is a file of the test's, naming the same (what the
        # cluster's DNS does for a Service's name)
        path, aliases = host_aliases
        with open(path, "w") as f:
            f.write("127.0.0.1\tlocalhost\n")
            for ip, names in aliases.items():
                f.write("%s\t%s\n" % (ip, " ".join(names)))
        os.chmod(path, 0o644)
        spec["volumes"].append({"name": "etc-hosts",
                                "hostPath": {"path": path, "type": "File"}})
        for c in spec.get("initContainers", []) + spec["containers"]:
            c.setdefault("volumeMounts", []).append(
                {"name": "etc-hosts", "mountPath": "/etc/hosts", "readOnly": True})
    # Nothing of the cluster's scheduling means anything to one podman.
    for k in ("nodeSelector", "affinity", "serviceAccountName", "dnsPolicy",
              "automountServiceAccountToken"):
        spec.pop(k, None)
    meta = {"name": pod_name, "labels": dict(tmpl.get("metadata", {}).get("labels", {}))}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def dump(docs):
    return yaml.safe_dump_all(docs, sort_keys=False)


if __name__ == "__main__":
    if len(sys.argv) != 3 or "/" not in sys.argv[2]:
        sys.exit("usage: playable.py DIR KIND/NAME")
    kind, name = sys.argv[2].split("/", 1)
    docs = kustomize(sys.argv[1])
    wl = find(docs, kind, name)
    print(dump([{"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": name}, "spec": wl["spec"]["template"]["spec"]}]))
