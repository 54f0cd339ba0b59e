"""Fixtures that start holdfast-sim and holdfast as separate processes on
ephemeral loopback ports (port 0: each binary prints the addresses it bound,
which the fixtures read), wait for readiness, and stop them by PID."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import pymongo

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("HOLDFAST_BIN_DIR", os.path.join(REPO, "target", "debug"))
PY3 = os.path.join(REPO, ".venv", "py3", "bin", "python")
PY4 = os.path.join(REPO, ".venv", "py4", "bin", "python")
NODE_DIR = os.path.join(REPO, "tests", "clients", "node")


def free_port_block(n):
    """A base port p with p..p+n-1 all free on 127.0.0.1 (for programs that
    cannot report an ephemeral port, such as Prometheus)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65000:
            continue
        socks = []
        try:
            for i in range(n):
                t = socket.socket()
                t.bind(("127.0.0.1", base + i))
                socks.append(t)
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free port block")


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if pred():
                return
        except Exception as e:  # noqa: BLE001 - readiness polling
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last})")


class Proc:
    def __init__(self, args, log, env=None):
        self.path = log
        self.log = open(log, "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def printed(self, pattern, timeout=30):
        """The first match of `pattern` (a regex, whole line) in what the
        process printed, waiting for it up to `timeout` seconds."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.path) as f:
                for line in f:
                    m = rx.fullmatch(line.rstrip("\n"))
                    if m:
                        return m
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.path}: exited ({self.p.returncode}) before printing {pattern!r}:\n"
                                   + open(self.path).read()[-2000:])
            time.sleep(0.02)
        raise TimeoutError(f"{self.path}: {pattern!r} not printed within {timeout}s")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


class Sim:
    """`args` are extra holdfast-sim flags (--auth, --user, --tls-...);
    `client_kw` are the pymongo options the fixture's own clients need
    (tls=True, tlsCAFile=...)."""

    def __init__(self, tmp, members=3, election_ms=1500, args=(), client_kw=None):
        self.client_kw = dict(client_kw or {})
        log = os.path.join(tmp, f"sim-{time.monotonic_ns()}.log")
        self.proc = Proc([os.path.join(BIN, "holdfast-sim"), "--members", str(members), "--port", "0",
                          "--set-name", "rs0", "--election-ms", str(election_ms)] + list(args), log)
        self.uri = self.proc.printed(r"(mongodb://\S+)").group(1)
        self.members = [self.proc.printed(rf"member {i}: (\S+) \w+").group(1) for i in range(members)]
        wait_until(lambda: self.primary() is not None, 20, "holdfast-sim")

    def direct(self, addr, **kw):
        return pymongo.MongoClient(addr, directConnection=True, serverSelectionTimeoutMS=3000,
                                   **dict(self.client_kw, **kw))

    def hello(self, addr):
        with self.direct(addr) as c:
            return c.admin.command("hello")

    def primary(self):
        for m in self.members:
            try:
                if self.hello(m).get("isWritablePrimary"):
                    return m
            except Exception:  # noqa: BLE001 - a member may be down
                pass
        return None

    def connections_current(self, addr):
        with self.direct(addr) as c:
            return c.admin.command("serverStatus")["connections"]["current"]

    def step_down(self, secs=10):
        p = self.primary()
        with self.direct(p) as c:
            c.admin.command({"replSetStepDown": secs, "secondaryCatchUpPeriodSecs": 0, "force": True})
        return p

    def fault(self, **cmd):
        """Sends {simFault: ...} through a member other than the target
        (the target may be slowed down or blackholed)."""
        target = cmd.get("member")
        order = [m for i, m in enumerate(self.members) if i != target] + \
            [m for i, m in enumerate(self.members) if i == target]
        for m in order:
            try:
                with self.direct(m) as c:
                    return c.admin.command(dict({"simFault": cmd["simFault"]}, **{k: v for k, v in cmd.items() if k != "simFault"}))
            except Exception:  # noqa: BLE001 - try the next member
                continue
        raise RuntimeError("no member answered simFault")

    def stop(self):
        self.proc.stop()


class Holdfast:
    """holdfast on ephemeral ports. `extra` arguments come after ours, so a
    test may override --listen or --admin-listen."""

    def __init__(self, tmp, upstream, *extra, env=None, wait_ready=True):
        args = [os.path.join(BIN, "holdfast"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
        if upstream:
            args += ["--upstream", upstream]
        log = os.path.join(tmp, f"holdfast-{time.monotonic_ns()}.log")
        self.proc = Proc(args + list(extra), log, env=env)
        self.addr = self.proc.printed(r"holdfast: listening on (\S+)").group(1)
        self.admin = self.proc.printed(r"holdfast: admin endpoint on (\S+) .*").group(1)
        self.uri = f"mongodb://{self.addr}/"
        if wait_ready:
            wait_until(lambda: self.http("/readyz")[0] == 200, 30, "holdfast")

    def http(self, path):
        try:
            with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name, **labels):
        """Sum of a metric's samples whose labels include `labels`."""
        total = 0.0
        for line in self.http("/metrics")[1].splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, lbl = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in lbl for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self):
        self.proc.stop()


@pytest.fixture
def sim(tmp_path):
    s = Sim(str(tmp_path))
    yield s
    s.stop()


@pytest.fixture
def proxy(tmp_path, sim):
    h = Holdfast(str(tmp_path), sim.uri, "--pool-size", "20")
    yield h
    h.stop()


def run(args, timeout=120, env=None):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    if r.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({r.returncode}):\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r.stdout


@pytest.fixture
def make_sim(tmp_path):
    made = []

    def make(**kw):
        s = Sim(str(tmp_path), **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture
def make_proxy(tmp_path):
    """holdfast with extra TOML configuration lines."""
    made = []

    def make(upstream, config=""):
        path = os.path.join(str(tmp_path), f"holdfast-{len(made)}.toml")
        with open(path, "w") as f:
            f.write(config)
        h = Holdfast(str(tmp_path), upstream, "--config", path)
        made.append(h)
        return h
    yield make
    for h in made:
        h.stop()


CLIENT_SUBJECT = "CN=client,OU=apps,O=holdfast"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    """Test certificates made with the openssl command line for each test
    (never committed): a CA; a server certificate for 127.0.0.1,
    localhost and *.holdfast.test (`server` holds certificate and key, `server_crt` and
    `server_key` each); a client certificate whose subject is
    CLIENT_SUBJECT."""
    d = str(tmp_path)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=holdfast test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

    def leaf(name, subject, ext):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
        pem = os.path.join(d, f"{name}.pem")
        with open(pem, "w") as out:
            for part in (f"{name}.crt", f"{name}.key"):
                with open(os.path.join(d, part)) as f:
                    out.write(f.read())
        return pem

    paths = {
        "dir": d,
        "ca": os.path.join(d, "ca.pem"),
        "server": leaf("server", "/O=holdfast/CN=sim", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.holdfast.test"),
        "client": leaf("client", "/O=holdfast/OU=apps/CN=client", "extendedKeyUsage=clientAuth"),
    }
    paths["server_crt"] = os.path.join(d, "server.crt")
    paths["server_key"] = os.path.join(d, "server.key")
    # openssl's RFC 2253 rendering of the subject is the user name.
    subject = subprocess.run(["openssl", "x509", "-in", os.path.join(d, "client.crt"), "-noout", "-subject",
                              "-nameopt", "RFC2253"], check=True, capture_output=True, text=True).stdout
    assert subject.strip() == f"subject={CLIENT_SUBJECT}"
    return paths
