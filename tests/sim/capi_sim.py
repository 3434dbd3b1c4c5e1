#!/usr/bin/python3
"""A Cluster API management cluster: k8s_sim.py serving, besides its own
kinds, v1 Secrets and cluster.x-k8s.io Clusters (--capi-versions, v1beta1
by default, first = preferred), with the same list/watch, status
subresource, writes, faults and /_sim/ switches.

    capi_sim.py [k8s_sim.py's options] [--capi-versions v1beta1,v1beta2]

Clusters are stored as given: a test sets status.phase,
status.controlPlaneReady and spec.controlPlaneEndpoint itself (PUT
.../clusters/NAME/status), as the Cluster API controllers would.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_sim  # noqa: E402


def main():
    versions = ["v1beta1"]
    argv = list(sys.argv)
    if "--capi-versions" in argv:
        i = argv.index("--capi-versions")
        versions = [v.strip() for v in argv[i + 1].split(",") if v.strip()]
        del argv[i:i + 2]
    sys.argv = argv
    base = k8s_sim.resource_types

    def resource_types(*args, **kw):
        return base(*args, **kw) + [
            k8s_sim.RType("", ["v1"], "secrets", "secret", "Secret", True,
                          has_status=False),
            k8s_sim.RType("cluster.x-k8s.io", versions, "clusters", "cluster",
                          "Cluster", True, ["cl"], ["cluster-api"]),
        ]
    k8s_sim.resource_types = resource_types
    k8s_sim.main()


if __name__ == "__main__":
    main()
