"""make run's demo: supervisord (etc/supervisord.conf), two clusters, the
routes working; --check runs it without waiting and stops everything."""

import subprocess

import harness
from harness import need


def test_demo_check():
    need("allocd", "renderd", "applyd", "watcherd")
    cp = subprocess.run(["/usr/bin/python3", harness.ROOT + "/scripts/demo.py", "--check"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=150)
    assert cp.returncode == 0, cp.stdout
    assert cp.stdout.count("ok: ") == 2, cp.stdout
    assert "stopped." in cp.stdout
