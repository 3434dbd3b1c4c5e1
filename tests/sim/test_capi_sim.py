"""capi_sim.py: the management cluster of tests/e2e/test_capi.py serves
Clusters (cluster.x-k8s.io) and Secrets to the real kubectl and to raw
HTTP, with a status subresource, beside everything k8s_sim.py serves.

Run: /usr/bin/python3 -m pytest -q tests/sim
"""

import base64
import json
import os
import secrets
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_sims import PYTHON, K8sSim, Pki, testlib, wait_port_file  # noqa: E402

CAPI = "/apis/cluster.x-k8s.io/v1beta1"


class CapiSim(K8sSim):
    """K8sSim's client side (request, get, kubectl), for capi_sim.py."""

    def __init__(self, tmp, pki, seed):
        self.pki = pki
        self.host = testlib.loopback_addr()
        self.port = testlib.free_port(self.host)
        self.token = secrets.token_hex(16)
        self.url = "https://%s:%d" % (self.host, self.port)
        self.cache_dir = os.path.join(tmp, "kube-cache")
        cert, key = pki.cert("mgmt", dns=["mgmt.example.test"], ips=[self.host])
        seed_path = os.path.join(tmp, "seed.json")
        with open(seed_path, "w") as f:
            json.dump(seed, f)
        port_file = os.path.join(tmp, "k8s.port")
        self.proc = testlib.Proc(
            [PYTHON, os.path.join(HERE, "capi_sim.py"), "--listen", self.host,
             "--port", str(self.port), "--cert", cert, "--key", key,
             "--token", self.token, "--seed", seed_path, "--port-file", port_file],
            "capi_sim", tmp)
        assert wait_port_file(self.proc, port_file) == self.port


@pytest.fixture
def mgmt(tmp_path):
    pki = Pki(tmp_path / "pki")
    d = tmp_path / "mgmt"
    d.mkdir()
    sim = CapiSim(str(d), pki, seed={"objects": [
        {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
         "metadata": {"name": "alpha", "namespace": "fleet-a"},
         "spec": {"controlPlaneEndpoint": {"host": "10.0.0.5", "port": 6443}},
         "status": {"phase": "Provisioned", "controlPlaneReady": True}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "alpha-kubeconfig", "namespace": "fleet-a"},
         "type": "cluster.x-k8s.io/secret",
         "data": {"value": base64.b64encode(b"apiVersion: v1\n").decode()}}]})
    yield sim
    sim.stop()


def test_capi_sim_serves_clusters_and_secrets(mgmt):
    out = mgmt.kubectl("get", "clusters.cluster.x-k8s.io", "-A").stdout
    assert "fleet-a" in out and "alpha" in out
    doc = yaml.safe_load(mgmt.kubectl("get", "secret", "alpha-kubeconfig", "-n",
                                      "fleet-a", "-o", "yaml").stdout)
    assert base64.b64decode(doc["data"]["value"]) == b"apiVersion: v1\n"
    # discovery names the group's versions, as watcherd reads them
    group = mgmt.get("/apis/cluster.x-k8s.io")
    assert [v["version"] for v in group["versions"]] == ["v1beta1"]
    # status is a subresource: a write to the object keeps it
    path = CAPI + "/namespaces/fleet-a/clusters/alpha"
    obj = mgmt.get(path)
    obj["status"] = {"phase": "Deleting"}
    obj["spec"]["paused"] = True
    status, got = mgmt.request("PUT", path, obj)
    assert status == 200 and got["status"]["phase"] == "Provisioned", got
    got["status"] = {"phase": "Deleting"}
    status, got = mgmt.request("PUT", path + "/status", got)
    assert status == 200 and got["status"]["phase"] == "Deleting", got
    # listed in pages, in one namespace or all
    page = mgmt.get(CAPI + "/clusters?limit=1")
    assert [c["metadata"]["name"] for c in page["items"]] == ["alpha"]
    assert mgmt.get(CAPI + "/namespaces/fleet-b/clusters")["items"] == []
    status, _ = mgmt.request("GET", CAPI + "/clusters", token="wrong")
    assert status == 401
