"""Fixtures for the end-to-end tests: fleets that are always torn down, with
their logs attached to the report of a failing test."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def _zmq_context_gone(ctx):
    """A zmq Context the garbage collector finds unclosed (a test that
    failed before its cleanup, a cycle) is destroyed with linger 0.
    pyzmq's own __del__ destroys it keeping each socket's linger, and a
    socket left at the default (forever) with a message queued to a
    daemon the test had stopped made that term() wait forever, wherever
    in the worker the collector ran: twice it hung a whole CI run in a
    test that never touched zmq."""
    if not getattr(ctx, "_shadow", True) and not ctx.closed:
        ctx.destroy(linger=0)


try:
    import zmq
    zmq.Context.__del__ = _zmq_context_gone
except ImportError:
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    fleets = getattr(item, "portico_fleets", None)
    if rep.failed and fleets:
        # The daemons are still running here: their logs are complete so far.
        for f in fleets:
            rep.sections.append(("portico fleet %s" % f.run_dir, f.logs()))


@pytest.fixture
def make_fleet(request):
    """Factory: make_fleet(**Fleet kwargs) -> an unstarted Fleet (add clusters,
    then .start()). Every fleet is stopped by PID afterwards, pass or fail;
    the run folder is kept when the test failed (or PORTICO_KEEP is set)."""
    made = []
    request.node.portico_fleets = made

    def make(**kw):
        f = harness.Fleet(**kw)
        made.append(f)
        return f
    yield make
    problems = []
    for f in made:
        problems += f.stop()
    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    if failed or problems or os.environ.get("PORTICO_KEEP"):
        for f in made:
            sys.stderr.write("portico: kept %s for inspection\n" % f.run_dir)
    else:
        for f in made:
            f.cleanup()
    if problems:
        pytest.fail("teardown: " + "\n".join(problems), pytrace=False)
