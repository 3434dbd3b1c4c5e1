"""portico's pods on a real pod runtime: Podman's `kube play`.

A `Pods` plays the pod templates of deploy/kubernetes (tests/pods/playable.py
turns a StatefulSet's, a Deployment's or a DaemonSet's template into a Pod)
from the image `make image` builds, beside a harness.Fleet that provides what
is outside the pods: the PKS and Kubernetes API simulators and the workloads,
on the test's own loopback addresses. The pods use the host's network (the
simulators are on loopback), so each daemon binds only the test's address and
free ports, as the configuration the test plays says.

Everything is named after the test's prefix (pods, ConfigMaps and their
volumes, the store's claim, folders) and removed by that name afterwards; the
image is the module's own tag, removed at the end of the module. Podman reads
its settings from tests/pods/containers.conf (CONTAINERS_CONF).
"""

import os
import random
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import harness

sys.path.insert(0, os.path.join(harness.ROOT, "tests", "pods"))
import playable  # noqa: E402

testlib = harness.testlib
DEPLOY = os.path.join(harness.ROOT, "deploy", "kubernetes")
CONTAINERS_CONF = os.path.join(harness.ROOT, "tests", "pods", "containers.conf")
PORTICO_UID = 999               # the image's portico user (scripts/image.sh)
PODMAN_TIMEOUT = 60


def podman_env():
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = CONTAINERS_CONF
    return env


def podman(*args, check=True, timeout=PODMAN_TIMEOUT, cwd=None):
    """Run podman; its output (text). cwd: kube play must not run in a
    folder holding a file named like the image (podman would build it)."""
    cp = subprocess.run(["podman"] + list(args), stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        timeout=timeout, env=podman_env(), cwd=cwd or "/")
    if check and cp.returncode != 0:
        raise AssertionError("podman %s failed (rc %d): %s" % (
            " ".join(args), cp.returncode, cp.stderr))
    return cp


def have_podman():
    return shutil.which("podman") is not None


class Image:
    """The module's image: scripts/image.sh over $PORTICO_BIN (the ASan
    build under make test), under a tag of its own."""

    def __init__(self):
        self.name = "localhost/portico-test:%d-%d" % (os.getpid(), random.randrange(1 << 30))
        t0 = time.monotonic()
        cp = subprocess.run(["sh", os.path.join(harness.ROOT, "scripts", "image.sh"),
                             "-b", harness.bin_dir(), self.name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=300, env=podman_env())
        if cp.returncode != 0:
            raise AssertionError("image.sh failed: %s" % cp.stderr)
        self.seconds = time.monotonic() - t0

    def remove(self):
        podman("rmi", "--force", self.name, check=False)


class Pod:
    """One played pod: its YAML file and what it was made with."""

    def __init__(self, pods, what, name, path, run_dir, listen, metrics):
        self.pods, self.what, self.name, self.path = pods, what, name, path
        self.run_dir = run_dir          # the host folder behind its /run/portico
        self.listen = listen            # the address its daemon or proxy binds
        self.metrics = metrics          # host:port of /healthz, /readyz
        self.played = False

    def container(self, what):
        return "%s-%s" % (self.name, what)

    def logs(self, what):
        cp = podman("logs", self.container(what), check=False)
        return cp.stdout + cp.stderr

    def usage(self, what):
        """(VmRSS in MiB, CPU seconds) of the container's daemon, from /proc."""
        pid = podman("inspect", "--format", "{{.State.Pid}}", self.container(what)).stdout
        pid = int(pid.strip())
        with open("/proc/%d/status" % pid) as f:
            rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS:")][0]
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return rss / 1024.0, cpu

    def http(self, path, timeout=2):
        """(status, body) of GET path on the daemon's metrics address."""
        try:
            with urllib.request.urlopen("http://%s%s" % (self.metrics, path),
                                        timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError:
            return None, ""

    def wait_healthy(self, timeout=60):
        """The daemon's loop goes round (/healthz answers 200)."""
        testlib.wait_until(lambda: self.http("/healthz")[0] == 200, timeout,
                           "%s healthy on %s" % (self.name, self.metrics))

    def wait_ready(self, timeout=60):
        testlib.wait_until(lambda: self.http("/readyz")[0] == 200, timeout,
                           "%s ready on %s" % (self.name, self.metrics))


class Pods:
    """portico's pods for one harness.Fleet (unstarted: its simulators run,
    its daemons never start; the pods are the daemons)."""

    def __init__(self, fleet, image, overlay=None):
        self.fleet = fleet
        self.image = image
        self.prefix = "pt%05d" % random.randrange(100000)
        self.dir = os.path.join(fleet.run_dir, "pods")
        os.makedirs(self.dir, mode=0o711)
        # A copy of deploy/kubernetes whose secrets/ make-secrets.sh fills,
        # as a user would, with the fleet's PKS client secret and CA.
        self.deploy = os.path.join(self.dir, "deploy")
        shutil.copytree(DEPLOY, self.deploy,
                        ignore=shutil.ignore_patterns("secrets"))
        env = dict(os.environ, PORTICO_PKS_SECRET=fleet.pks_auth["client_secret"],
                   PORTICOCTL=harness.daemon_path("porticoctl"))
        subprocess.run(["sh", os.path.join(self.deploy, "make-secrets.sh"),
                        "-c", fleet.pki.ca_cert], check=True, env=env,
                       stdout=subprocess.DEVNULL, timeout=30)
        # overlay: a folder of deploy/kubernetes/overlays to play instead
        self.docs = playable.kustomize(os.path.join(self.deploy, *(
            ("overlays", overlay) if overlay else ())))
        self.secrets = {}
        for sec in self.docs:
            if sec["kind"] == "Secret":
                name = sec["metadata"]["name"].rsplit("-", 1)[0]
                self.secrets[name] = playable.secret_dir(
                    self.docs, name, os.path.join(self.dir, "sec-" + name),
                    gid=PORTICO_UID)
        # What the Services' names stand for in each pod's /etc/hosts:
        # allocd's pod's address, and the address of the renderd replica
        # an applyd is given; the bus's ports (free on allocd's address;
        # the replicas' are fresh addresses).
        self.allocd_addr = testlib.loopback_addr()
        self.render_addr = {}           # renderd replica -> its address
        self.bus_ports = self._free_ports(5)
        self.pods = {}
        self.configmaps = set()
        self.claims = set()
        self.metrics_host = fleet.listen
        self.old_logs = []              # (pod, log) of pods taken down

    def _free_ports(self, n):
        ports = set()
        while len(ports) < n:
            ports.add(testlib.free_port(self.allocd_addr))
        return sorted(ports)

    def _folder(self, name, uid=PORTICO_UID):
        path = os.path.join(self.dir, name)
        os.makedirs(path, mode=0o700)
        os.chown(path, uid, uid)
        return path

    def name(self, what):
        return "%s-%s" % (self.prefix, what)

    def conf_over(self, listen=None, metrics=None, bind=None):
        """The test's changes to the shipped portico.conf: its addresses,
        ports and simulators; the bus's ports. metrics: {key: host:port};
        bind: the pod's own address ([bus] bind: the Services' names are
        hostAliases of the address of the pod they stand for)."""
        f = self.fleet
        a_in, a_pub, a_sync, r_pub, r_sync = self.bus_ports
        over = {
            "portico": {"domain": harness.DOMAIN, "listen": listen or f.listen,
                        "api_port": f.api_port,
                        "ports": "%d-%d" % (f.port_lo, f.port_hi),
                        "quarantine": f.quarantine},
            "pks": {"url": f.pks.url, "uaa_url": f.pks.url,
                    "client_id": f.pks_auth["client_id"],
                    "poll_interval": f.poll_interval},
            "clusters": {"watch_timeout": f.watch_timeout},
            "limits": dict(f.limits),
            "metrics": {},
            "bus": {"alloc_in": "tcp://portico-allocd:%d" % a_in,
                    "alloc_pub": "tcp://portico-allocd:%d" % a_pub,
                    "alloc_sync": "tcp://portico-allocd:%d" % a_sync,
                    "bind": bind or "127.0.0.1"},
            "proxy.haproxy": {"pub": "tcp://portico-renderd:%d" % r_pub,
                              "sync": "tcp://portico-renderd:%d" % r_sync},
        }
        for key, addr in (metrics or {}).items():
            if key in ("allocd", "watcherd"):
                over["metrics"][key] = addr
            else:
                over["proxy.haproxy"][key] = addr
        return over

    def _metrics_addr(self, host=None):
        host = host or self.metrics_host
        return "%s:%d" % (host, testlib.free_port(host))

    def play(self, what, kind, workload, claims=None, listen=None, bind=None,
             metrics_key=None, uid=PORTICO_UID, hostname=None, renderd=0):
        """Play workload's pod template as the pod <prefix>-<what>, with
        ConfigMaps of its own (the shipped ones; portico.conf with the
        test's addresses). renderd: the replica portico-renderd names."""
        name = self.name(what)
        metrics = self._metrics_addr(bind or listen)
        cm_name, pub_name = name + "-config", name + "-pub"
        cm = playable.configmap(self.docs, "portico-config", cm_name,
                                self.conf_over(listen, {metrics_key: metrics}, bind))
        pub = playable.configmap(self.docs, "portico-bus-pub", pub_name)
        run_dir = self._folder("run-" + what, uid)
        aliases = {self.allocd_addr: ["portico-allocd"]}
        if renderd in self.render_addr:
            aliases[self.render_addr[renderd]] = ["portico-renderd"]
        pod = playable.pod(self.docs, kind, workload, name, self.image.name,
                           configmaps={"portico-config": cm_name,
                                       "portico-bus-pub": pub_name},
                           secrets=self.secrets, claims=claims,
                           empty_dirs={"run": run_dir}, host_network=True,
                           hostname=hostname,
                           host_aliases=(os.path.join(self.dir, what + ".hosts"), aliases))
        path = os.path.join(self.dir, what + ".yaml")
        with open(path, "w") as f:
            f.write(playable.dump([cm, pub, pod]))
        p = Pod(self, what, name, path, run_dir, listen or self.fleet.listen, metrics)
        self.pods[what] = p
        self.configmaps.update((cm_name, pub_name))
        self.claims.update((claims or {}).values())
        self.up(p)
        return p

    def up(self, pod):
        podman("kube", "play", pod.path)
        pod.played = True

    def save_logs(self, what):
        """Keep what a pod's daemon logged before its containers go."""
        p = self.pods[what]
        self.old_logs.append((p.name, p.logs(what.split("-")[0])))

    def down(self, pod):
        """kube down: the pod's containers get SIGTERM (then SIGKILL), the
        pod goes; its claim (a named volume) stays."""
        self.save_logs(pod.what)
        podman("kube", "down", pod.path, check=False)
        pod.played = False

    def kill(self, pod):
        """The pod killed (SIGKILL to every container) and removed, as a
        node that dies takes it."""
        self.save_logs(pod.what)
        podman("pod", "kill", "--signal", "KILL", pod.name, check=False)
        podman("pod", "rm", "--force", pod.name, check=False)
        pod.played = False

    # -- the daemons, as the manifests run them
    def start_allocd(self):
        return self.play("allocd", "StatefulSet", "portico-allocd",
                         claims={"store": self.name("store")}, bind=self.allocd_addr,
                         metrics_key="allocd", hostname="portico-allocd-0")

    def start_renderd(self, replica=0):
        """A replica of renderd's Deployment, on an address of its own (as
        each pod has its own)."""
        addr = self.render_addr.setdefault(replica, testlib.loopback_addr())
        return self.play("renderd-%d" % replica, "Deployment", "portico-renderd",
                         bind=addr, metrics_key="renderd_metrics")

    def start_applyd(self, node="a", replica=0, listen=None):
        """applyd and its HAProxy, as on one ingress node (its own listen
        address), fed by one renderd replica (the one the Service's name
        leads to)."""
        return self.play("applyd-" + node, "DaemonSet", "portico-applyd",
                         listen=listen, metrics_key="applyd_metrics", uid=0,
                         renderd=replica)

    def start_watcherd(self, ordinal=0):
        """The StatefulSet's pod portico-watcherd-<ordinal>: that shard."""
        what = "watcherd" if ordinal == 0 else "watcherd-%d" % ordinal
        return self.play(what, "StatefulSet", "portico-watcherd",
                         metrics_key="watcherd",
                         hostname="portico-watcherd-%d" % ordinal)

    def start(self, shards=1):
        """allocd, one renderd, one applyd, watcherd (each of its shards);
        HAProxy listening."""
        t0 = time.monotonic()
        self.start_allocd().wait_healthy()
        self.start_renderd().wait_healthy()
        self.start_applyd().wait_healthy()
        for i in range(shards):
            self.start_watcherd(i).wait_healthy()
        self.fleet.wait_proxy(timeout=60)
        return time.monotonic() - t0

    def proxy_cfg(self, node="a"):
        """The configuration node's HAProxy serves (applyd's run folder)."""
        path = os.path.join(self.pods["applyd-" + node].run_dir, "run", "haproxy.cfg")
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    # -- teardown
    def logs(self):
        out = []
        for what, p in self.pods.items():
            for c in [what.split("-")[0]]:
                out.append("----- pod %s, container %s\n%s" % (
                    p.name, c, harness.tail(p.logs(c), 80)))
        return "\n".join(out)

    def stop(self):
        """Stop every pod still up (SIGTERM, as Kubernetes stops a pod),
        keep its daemon's log, and return the problems: a daemon that did
        not exit 0 on SIGTERM."""
        problems = []
        for what, p in self.pods.items():
            if not p.played:
                continue
            podman("pod", "stop", "--time", "20", p.name, check=False)
            c = p.container(what.split("-")[0])
            rc = podman("inspect", "--format", "{{.State.ExitCode}}", c,
                        check=False).stdout.strip()
            if rc != "0":
                problems.append("%s exited %s on SIGTERM" % (c, rc))
            self.save_logs(what)
            p.played = False
        return problems

    def sanitizer_reports(self):
        """Sanitizer reports in the logs of the pods taken down or stopped
        (stop() first: a leak is reported at exit)."""
        found = []
        for name, log in self.old_logs:
            for mark in harness.SANITIZER_MARKS:
                if mark in log:
                    i = log.index(mark)
                    found.append("%s: %s" % (name, log[max(0, i - 200):i + 3000]))
                    break
        return found

    def cleanup(self):
        """Every pod, ConfigMap volume and claim of this test, by name."""
        for p in self.pods.values():
            podman("kube", "down", p.path, check=False)
            podman("pod", "rm", "--force", "--ignore", p.name, check=False)
        for v in sorted(self.configmaps | self.claims):
            podman("volume", "rm", "--force", v, check=False)
