"""The watch path under attack (issue 11): what a cluster's API server, or
the way to it, can do to watcherd, tried for real against the simulators'
fault switches (tests/sim/README.md). Each costs that cluster at most a
quick restart, never watcherd itself, and never another cluster."""

import re
import time

import harness
import testlib
from harness import EXPOSE, dest, need, payments_cluster, search_cluster, virtualservice
from test_informer import NS, expose, log_has, new_vs, start


def test_error_event_with_reason(make_fleet):
    """An in-stream ERROR of code 500 with a reason (any API server may send
    one): watcherd read the reason after freeing it, and the ASan build
    died. Now it backs off, says which code, and goes on."""
    fleet, pay = start(make_fleet)
    expose(fleet, pay, "ledger-db")
    pay.fault(kind="watch-error", code=500, reason="InternalError",
              message="etcdserver: request timed out", count=1, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    new_vs(fleet, pay, "after-error")
    assert fleet["watcherd"].alive()
    log_has(fleet, r"virtualservices: watch: server sent an ERROR event, code 500")


def test_binds_201(make_fleet):
    """PKS answers the binds POST with 201 Created (any 2xx with a
    kubeconfig): the cluster is watched, and its VirtualServices get their
    addresses."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet)
    fleet.pks.control("PUT", "/_sim/faults", {
        "path": "/v1/clusters/payments/binds", "answer": 201})
    fleet.start()
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    assert fleet.pks.requests().get("/v1/clusters/payments/binds", 0) >= 1
    log_has(fleet, r"payments: credentials from PKS")
