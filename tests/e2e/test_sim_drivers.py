"""Real drivers accept holdfast-sim as a MongoDB replica set."""
import json
import os

from conftest import NODE_DIR, PY3, PY4, REPO, run

SCRIPT = os.path.join(REPO, "tests", "e2e", "clients", "sim_pymongo.py")


def check_pymongo(python, sim, version_prefix):
    out = json.loads(run([python, SCRIPT, sim.uri]).strip().splitlines()[-1])
    assert out["pymongo"].startswith(version_prefix)
    assert out["members"] == ["RSPrimary", "RSSecondary", "RSSecondary"]
    assert out["old_primary_error"] == {"type": "NotPrimaryError", "code": 10107}
    return out


def test_pymongo4_against_the_sim(sim):
    check_pymongo(PY4, sim, "4.")


def test_pymongo3_against_the_sim(sim):
    check_pymongo(PY3, sim, "3.12.3")


def test_node_driver_against_the_sim(sim):
    assert '"node":"ok"' in run(["node", os.path.join(NODE_DIR, "sim_scenario.mjs"), sim.uri])


def test_mongosh_against_the_sim(sim):
    mongosh = os.path.join(NODE_DIR, "node_modules", ".bin", "mongosh")
    out = run([mongosh, sim.uri, "--quiet", "--norc", "--eval",
               "const c = db.getSiblingDB('simsh').t; c.drop(); c.insertMany([{a:1},{a:2}]);"
               "if (c.find({a: 2}).toArray().length !== 1) throw new Error('find');"
               "if (rs.status().members.length !== 3) throw new Error('status');"
               "print('mongosh-sim-ok', db.hello().setName)"])
    assert "mongosh-sim-ok rs0" in out
