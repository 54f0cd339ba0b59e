"""Real clients through holdfast (no replicaSet= in their URI)."""
import json
import os
import socket
import struct
import threading
import time

import pymongo

from conftest import NODE_DIR, PY3, PY4, REPO, run

SCENARIO = os.path.join(REPO, "tests", "e2e", "clients", "pymongo_scenario.py")


def test_pymongo4_runs_everything_and_sees_only_holdfast(proxy):
    out = json.loads(run([PY4, SCENARIO, proxy.uri, proxy.addr]).strip().splitlines()[-1])
    assert out["pymongo"].startswith("4.")
    assert out["servers"] == {proxy.addr: "Mongos"}


def test_pymongo3_runs_everything_and_sees_only_holdfast(proxy):
    out = json.loads(run([PY3, SCENARIO, proxy.uri, proxy.addr]).strip().splitlines()[-1])
    assert out["pymongo"] == "3.12.3"
    assert out["servers"] == {proxy.addr: "Mongos"}


def test_node_driver(proxy):
    out = run(["node", os.path.join(NODE_DIR, "scenario.mjs"), proxy.uri, proxy.addr])
    assert '"node":"ok"' in out


def test_mongosh(proxy):
    mongosh = os.path.join(NODE_DIR, "node_modules", ".bin", "mongosh")
    out = run([mongosh, proxy.uri, "--quiet", "--norc", "--file", os.path.join(NODE_DIR, "mongosh_scenario.js")])
    assert "mongosh-ok" in out


def test_600_busy_clients_share_a_bounded_pool(proxy, sim):
    primary = sim.primary()
    poller = sim.direct(primary)
    status = lambda: poller.admin.command("serverStatus")["connections"]["current"]  # noqa: E731
    coll = pymongo.MongoClient(proxy.uri)["load"]["c"]
    coll.insert_one({"_id": 1})
    time.sleep(0.5)
    # Connections the primary has before the load: holdfast's monitors and
    # its one pooled connection, this poller, the setup client.
    baseline = status()
    # Every operation takes 100 ms on the primary, so 600 of them overlap.
    poller.admin.command({"simFault": "latency", "ms": 100})
    client = pymongo.MongoClient(proxy.uri, maxPoolSize=600)
    barrier = threading.Barrier(600)
    errors = []
    peak = [0]

    def worker():
        try:
            c = client["load"]["c"]
            barrier.wait(30)
            for _ in range(3):
                assert c.find_one({"_id": 1}) is not None
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(600)]
    for t in threads:
        t.start()
    clients_seen = 0.0
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], status())
        clients_seen = max(clients_seen, proxy.metric("holdfast_client_connections"))
        time.sleep(0.05)
    poller.admin.command({"simFault": "latency", "ms": 0})
    assert not errors, errors[:3]
    assert clients_seen >= 600, clients_seen
    # holdfast's pool for the primary is 20: at most 19 more than the one
    # pooled connection counted in the baseline, and the load fills it.
    grown = peak[0] - baseline
    assert grown <= 19, (baseline, peak[0])
    assert grown >= 15, (baseline, peak[0])
    assert proxy.metric("holdfast_backend_connections", member=primary) <= 20


def test_garbage_closes_only_that_connection(proxy):
    good = pymongo.MongoClient(proxy.uri)
    good.admin.command("ping")
    host, port = proxy.addr.split(":")
    for garbage in [b"\xff" * 64, struct.pack("<i", 5) + b"x" * 20, struct.pack("<iiii", 40, 1, 0, 2013) + b"\x00" * 24]:
        s = socket.create_connection((host, int(port)))
        s.sendall(garbage)
        s.settimeout(5)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                if len(data) >= 4 and len(data) >= struct.unpack("<i", data[:4])[0]:
                    break
        except socket.timeout:
            raise AssertionError("holdfast neither answered nor closed a garbage connection")
        finally:
            s.close()
        assert good.admin.command("ping")["ok"] == 1.0
    assert good["x"]["y"].insert_one({"a": 1}).acknowledged
    assert proxy.metric("holdfast_protocol_errors_total") >= 3
