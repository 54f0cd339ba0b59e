"""A `mongodb+srv://` cluster on this machine, for holdfast's SRV test.

Run as root under `unshare -n -m` (a network and mount namespace of its
own): brings loopback up, points /etc/resolv.conf (inside the namespace
only) at a DNS server it serves on 127.0.0.1:53 with dnslib, starts
holdfast-sim with access control and TLS, publishes the set the way Atlas
does (SRV records `_mongodb._tcp.<cluster>` naming the members, a TXT record
with `replicaSet` and `authSource`), starts holdfast with the
`mongodb+srv://` upstream and runs a pymongo client through it. Prints one
JSON object with what it saw.

    unshare -n -m python srv_world.py BIN_DIR CA SERVER_PEM WORK_DIR
"""
import json
import os
import subprocess
import sys
import threading
import time

import pymongo
from dnslib import QTYPE, RR, A, SRV, TXT
from dnslib.server import BaseResolver, DNSServer

BIN, CA, SERVER_PEM, WORK = sys.argv[1:5]
CLUSTER = "cluster0.holdfast.test"
SVC_PW = "srv-svc-pw"


def sh(*args):
    subprocess.run(args, check=True)


class Zone(BaseResolver):
    def __init__(self, ports):
        self.ports = ports
        self.asked = []

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        qtype = QTYPE[request.q.qtype]
        self.asked.append(f"{qtype} {name}")
        if qtype == "SRV" and name == f"_mongodb._tcp.{CLUSTER}":
            for i, port in enumerate(self.ports):
                reply.add_answer(RR(request.q.qname, QTYPE.SRV, ttl=60,
                                    rdata=SRV(0, 0, port, f"m{i}.holdfast.test.")))
        elif qtype == "TXT" and name == CLUSTER:
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=60,
                                rdata=TXT("replicaSet=rs0&authSource=admin")))
        elif qtype == "A" and name.endswith(".holdfast.test"):
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A("127.0.0.1")))
        return reply


def printed(proc_log, prefix, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(proc_log) as f:
            for line in f:
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        time.sleep(0.05)
    raise TimeoutError(f"{prefix!r} not printed:\n" + open(proc_log).read()[-3000:])


def main():
    sh("ip", "link", "set", "lo", "up")
    resolv = os.path.join(WORK, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    sh("mount", "--bind", resolv, "/etc/resolv.conf")
    procs = []
    out = {}
    try:
        sim_log = os.path.join(WORK, "srv-sim.log")
        procs.append(subprocess.Popen(
            [os.path.join(BIN, "holdfast-sim"), "--members", "3", "--port", "0", "--set-name", "rs0",
             "--auth", "--user", f"svc:{SVC_PW}:readWrite@app", "--tls-cert-key-file", SERVER_PEM],
            stdout=open(sim_log, "w"), stderr=subprocess.STDOUT))
        ports = [int(printed(sim_log, f"member {i}: ").split()[0].rsplit(":", 1)[1]) for i in range(3)]
        zone = Zone(ports)
        dns = DNSServer(zone, port=53, address="127.0.0.1")
        dns.start_thread()
        hf_log = os.path.join(WORK, "srv-holdfast.log")
        upstream = f"mongodb+srv://svc:{SVC_PW}@{CLUSTER}/?tlsCAFile={CA}"
        procs.append(subprocess.Popen(
            [os.path.join(BIN, "holdfast"), "--upstream", upstream, "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0"],
            stdout=open(hf_log, "w"), stderr=subprocess.STDOUT))
        addr = printed(hf_log, "holdfast: listening on ")
        with pymongo.MongoClient(f"mongodb://{addr}/", serverSelectionTimeoutMS=15000) as c:
            deadline = time.time() + 20
            while True:
                try:
                    c.app.t.insert_one({"via": "srv"})
                    break
                except pymongo.errors.PyMongoError as e:
                    if time.time() > deadline:
                        raise
                    out.setdefault("retried", repr(e))
                    time.sleep(0.2)
            out["count"] = c.app.t.count_documents({"via": "srv"})
            out["user"] = c.admin.command("connectionStatus")["authInfo"]["authenticatedUsers"]
        out["asked"] = sorted(set(zone.asked))
        out["log_has_password"] = SVC_PW in open(hf_log).read()
        out["tls"] = "connections to the replica set use TLS" in open(hf_log).read()
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(json.dumps(out))


if __name__ == "__main__":
    threading.excepthook = lambda a: None
    main()
