"""Operating holdfast: metrics scraped by a real Prometheus, promtool, graceful drain,
configuration precedence and redaction, JSON logs."""
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pymongo
import pytest

from conftest import BIN, REPO, Holdfast, Proc, free_port_block, wait_until


def test_metrics_pass_promtool(proxy):
    c = pymongo.MongoClient(proxy.uri)
    c.db.c.insert_one({"a": 1})
    list(c.db.c.find())
    status, text = proxy.http("/metrics")
    assert status == 200
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ["holdfast_requests_total", "holdfast_request_duration_seconds_bucket", "holdfast_primary_known",
                 "holdfast_backend_connections", "holdfast_client_connections_total", "holdfast_bytes_received_total"]:
        assert name in text, name


def test_real_prometheus_counts_a_primary_change(tmp_path, sim, proxy):
    port = free_port_block(1)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: holdfast
    static_configs:
      - targets: ["{proxy.admin}"]
""")
    log = open(tmp_path / "prometheus.log", "w")
    p = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(q):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(url, timeout=2) as r:
                res = json.load(r)["data"]["result"]
            return float(res[0]["value"][1]) if res else None

        wait_until(lambda: query("holdfast_primary_known") == 1.0, 30, "prometheus scraping holdfast")
        before = query("holdfast_primary_changes_total")
        sim.step_down()
        wait_until(lambda: query("holdfast_primary_changes_total") >= before + 2, 30, "primary change in prometheus")
        assert query(f"up{{instance=\"{proxy.admin}\"}}") == 1.0
    finally:
        p.terminate()
        p.wait(10)
        log.close()


def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path, sim):
    h = Holdfast(str(tmp_path), sim.uri)
    c = pymongo.MongoClient(h.uri, retryReads=False)
    c.db.c.insert_one({"_id": 1})
    primary = sim.primary()
    with sim.direct(primary) as d:
        d.admin.command({"simFault": "latency", "ms": 1500})
    box = {}

    def slow_read():
        box["doc"] = c.db.c.find_one({"_id": 1})
    t = threading.Thread(target=slow_read)
    t.start()
    time.sleep(0.4)
    t0 = time.time()
    h.proc.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert h.http("/readyz")[0] == 503  # draining: taken out of service
    t.join(10)
    assert box.get("doc") == {"_id": 1}, box
    assert h.proc.p.wait(20) == 0
    assert time.time() - t0 < 10
    with sim.direct(primary) as d:
        d.admin.command({"simFault": "latency", "ms": 0})
    h.stop()


def test_sigint_exits_fast(tmp_path, sim):
    h = Holdfast(str(tmp_path), sim.uri)
    c = pymongo.MongoClient(h.uri)
    c.admin.command("ping")
    t0 = time.time()
    h.proc.p.send_signal(signal.SIGINT)
    assert h.proc.p.wait(10) == 0
    assert time.time() - t0 < 3
    h.stop()


def test_check_config_validates_and_redacts(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('upstream = "mongodb://app:s3cr3t-pw@db1:27017,db2:27017/?replicaSet=rs0"\npool_size = 7\n')
    r = subprocess.run([os.path.join(BIN, "holdfast"), "check-config", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "s3cr3t-pw" not in r.stdout + r.stderr
    assert "app:*****@db1" in r.stdout and "pool_size: 7" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("pool_size = 7\nhold_timout_ms = 5\n")
    r = subprocess.run([os.path.join(BIN, "holdfast"), "check-config", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "hold_timout_ms" in r.stderr, r.stderr
    # The shipped file is valid.
    r = subprocess.run([os.path.join(BIN, "holdfast"), "check-config", os.path.join(REPO, "config", "holdfast.toml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_password_never_appears_in_logs(tmp_path, sim):
    uri = sim.uri.replace("mongodb://", "mongodb://nobody:hunter2-pw@")
    h = Holdfast(str(tmp_path), uri)
    h.stop()
    log = open(h.proc.log.name).read()
    assert "hunter2-pw" not in log and "nobody:*****@" in log, log[-2000:]


def test_flags_beat_environment_beat_file(tmp_path, sim):
    # Three loopback addresses (ephemeral ports) tell the sources apart.
    cfg = tmp_path / "h.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\nadmin_listen = ""\nupstream = "{sim.uri}"\n')
    env = dict(os.environ, HOLDFAST_LISTEN="127.0.0.2:0")
    for extra, host in [([], "127.0.0.2"), (["--listen", "127.0.0.3:0"], "127.0.0.3")]:
        proc = Proc([os.path.join(BIN, "holdfast"), "--config", str(cfg)] + extra,
                    str(tmp_path / f"holdfast-{host}.log"), env=env)
        try:
            addr = proc.printed(r"holdfast: listening on (\S+)").group(1)
            assert addr.startswith(host + ":"), addr
            pymongo.MongoClient(addr, serverSelectionTimeoutMS=5000).admin.command("ping")
        finally:
            proc.stop()


def test_json_logs_carry_the_client_peer(tmp_path, sim):
    h = Holdfast(str(tmp_path), sim.uri, "--log-format", "json")
    c = pymongo.MongoClient(h.uri, retryReads=False)
    c.db.c.insert_one({"_id": 1})
    sim.step_down()
    c.db.c.find_one({"_id": 1})  # held: one structured line
    h.stop()
    lines = [json.loads(line) for line in open(h.proc.log.name) if line.startswith("{")]
    assert lines, "no JSON log lines"
    held = [x for x in lines if x.get("fields", {}).get("action") == "held"]
    assert held, lines[-5:]
    x = held[0]
    assert x["fields"]["command"] == "find" and "held_ms" in x["fields"]
    assert "peer" in json.dumps(x.get("span", {})) + json.dumps(x.get("spans", []))
    # Quiet by default: no log line per ordinary request.
    assert not [x for x in lines if x.get("fields", {}).get("command") == "insert"]


def test_unix_socket_listener(tmp_path, sim):
    sock = str(tmp_path / "holdfast.sock")
    p = subprocess.Popen([os.path.join(BIN, "holdfast"), "--upstream", sim.uri, "--listen", f"unix:{sock}",
                          "--admin-listen", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        uri = "mongodb://" + urllib.parse.quote(sock, safe="")
        wait_until(lambda: pymongo.MongoClient(uri, serverSelectionTimeoutMS=500).admin.command("ping"), 20, "unix socket")
        c = pymongo.MongoClient(uri)
        c.db.c.insert_one({"_id": "unix"})
        assert c.db.c.find_one({"_id": "unix"}) == {"_id": "unix"}
    finally:
        p.terminate()
        p.wait(10)


def metric_families_in_docs():
    """Every `holdfast_*` name in the metrics table of docs/operations.md."""
    text = open(os.path.join(REPO, "docs", "operations.md")).read()
    table = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return sorted(set(re.findall(r"^\| `(holdfast_[a-z_]+)`", table, re.M)))


def test_a_fresh_holdfast_exports_every_documented_family(tmp_path, sim):
    h = Holdfast(str(tmp_path), sim.uri)
    try:
        families = metric_families_in_docs()
        assert len(families) >= 25, families
        wait_until(lambda: "member=" in h.http("/metrics")[1], 10, "member-labelled series")
        text = h.http("/metrics")[1]
        missing = [f for f in families if f"# TYPE {f} " not in text]
        assert not missing, missing
        # Known label values are there at zero before anything happened.
        assert 'holdfast_replays_total{class="read",outcome="network"} 0' in text
        assert 'holdfast_client_connections_closed_total{reason="frame_timeout"} 0' in text
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        h.stop()
