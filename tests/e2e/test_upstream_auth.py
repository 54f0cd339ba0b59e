"""holdfast in front of a replica set with access control (holdfast-sim
--auth): every backend connection logs in as the connection string's user,
so clients without credentials of their own work through it (the sidecar
model), across a stepdown too; wrong upstream credentials give clients one
clear, fast error and never show the password."""
import time

import pymongo
import pytest
from pymongo.errors import OperationFailure

from conftest import Holdfast, Sim

PASSWORD = "s3rvice-Pw"


def with_credentials(uri, user, password=None):
    auth = f"{user}:{password}@" if password is not None else f"{user}@"
    sep = "&" if "?" in uri else "?"
    return uri.replace("mongodb://", "mongodb://" + auth, 1) + sep + "authSource=admin"


@pytest.fixture
def auth_sim(tmp_path):
    s = Sim(str(tmp_path), args=["--auth", "--user", f"svc:{PASSWORD}", "--user", "reader:rpw:read@e2e"],
            client_kw=dict(username="svc", password=PASSWORD, authSource="admin"))
    yield s
    s.stop()


def clients_work_through(proxy, sim):
    c = pymongo.MongoClient(proxy.uri, retryWrites=False, retryReads=False, serverSelectionTimeoutMS=20000)
    coll = c.e2e.things
    coll.drop()
    coll.insert_many([{"_id": i} for i in range(10)])
    assert coll.count_documents({}) == 10
    sim.step_down()
    # Held or replayed on the new primary, over freshly authenticated connections.
    assert coll.find_one({"_id": 3}) == {"_id": 3}
    coll.update_one({"_id": 3}, {"$set": {"v": 1}})
    assert coll.find_one({"_id": 3}) == {"_id": 3, "v": 1}
    c.close()


def test_backend_connections_log_in_as_the_upstream_user(tmp_path, auth_sim):
    # Straight to the set, a client without credentials is refused...
    with pymongo.MongoClient(auth_sim.uri, serverSelectionTimeoutMS=5000) as direct:
        with pytest.raises(OperationFailure) as e:
            direct.e2e.things.find_one()
        assert e.value.code == 13
    # ...through holdfast it runs as holdfast's upstream identity.
    proxy = Holdfast(str(tmp_path), with_credentials(auth_sim.uri, "svc", PASSWORD))
    try:
        clients_work_through(proxy, auth_sim)
        log = open(proxy.proc.path).read()
        assert PASSWORD not in log
        assert "backend connections log in upstream" in log
    finally:
        proxy.stop()


def test_the_password_can_come_from_a_file(tmp_path, auth_sim):
    secret = tmp_path / "upstream-password"
    secret.write_text(PASSWORD + "\n")
    cfg = tmp_path / "holdfast.toml"
    cfg.write_text(f'upstream_password_file = "{secret}"\n')
    proxy = Holdfast(str(tmp_path), with_credentials(auth_sim.uri, "svc"), "--config", str(cfg))
    try:
        clients_work_through(proxy, auth_sim)
    finally:
        proxy.stop()


def test_the_upstream_users_own_rights_apply(tmp_path, auth_sim):
    # The upstream user "reader" may only read e2e: through holdfast, clients
    # get exactly that, never more.
    proxy = Holdfast(str(tmp_path), with_credentials(auth_sim.uri, "reader", "rpw"))
    try:
        with pymongo.MongoClient(auth_sim.uri, username="svc", password=PASSWORD, authSource="admin") as admin:
            admin.e2e.things.insert_one({"_id": "x"})
        c = pymongo.MongoClient(proxy.uri, retryWrites=False, serverSelectionTimeoutMS=10000)
        assert c.e2e.things.find_one({"_id": "x"}) == {"_id": "x"}
        with pytest.raises(OperationFailure) as e:
            c.e2e.things.insert_one({"_id": "y"})
        assert e.value.code == 13
        with pytest.raises(OperationFailure) as e:
            c.other.things.find_one()
        assert e.value.code == 13
    finally:
        proxy.stop()


def test_wrong_upstream_credentials_give_one_clear_fast_error(tmp_path, auth_sim):
    wrong = "not-the-password"
    proxy = Holdfast(str(tmp_path), with_credentials(auth_sim.uri, "svc", wrong))
    try:
        c = pymongo.MongoClient(proxy.uri, retryReads=False, serverSelectionTimeoutMS=10000)
        t0 = time.time()
        with pytest.raises(OperationFailure) as e:
            c.e2e.things.find_one()
        waited = time.time() - t0
        assert e.value.code == 18, e.value.details
        msg = e.value.details["errmsg"]
        assert "could not log in" in msg and "admin.svc" in msg and "Authentication failed." in msg, msg
        assert wrong not in msg
        # Not held like a missing primary (hold_timeout_ms is 30 s).
        assert waited < 5, waited
        assert wrong not in open(proxy.proc.path).read()
    finally:
        proxy.stop()


def test_clients_log_in_to_holdfast_with_scram(tmp_path, auth_sim):
    # holdfast authenticates its clients from a users file; the users run
    # upstream as holdfast's identity (upstream = "service").
    users = tmp_path / "users.toml"
    users.write_text('[[user]]\nname = "app"\npassword = "app-pw"\nupstream = "service"\n')
    cfg = tmp_path / "holdfast.toml"
    cfg.write_text(f'users_file = "{users}"\n')
    proxy = Holdfast(str(tmp_path), with_credentials(auth_sim.uri, "svc", PASSWORD), "--config", str(cfg))
    try:
        for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
            with pymongo.MongoClient(proxy.uri, username="app", password="app-pw", authMechanism=mech,
                                     serverSelectionTimeoutMS=10000) as c:
                c.e2e.login.insert_one({"mech": mech})
                assert c.e2e.login.find_one({"mech": mech})["mech"] == mech
        with pymongo.MongoClient(proxy.uri, username="app", password="wrong", serverSelectionTimeoutMS=10000) as c:
            with pytest.raises(OperationFailure) as e:
                c.e2e.login.find_one()
            assert e.value.code == 18
        with pymongo.MongoClient(proxy.uri, serverSelectionTimeoutMS=10000) as c:
            with pytest.raises(OperationFailure) as e:
                c.e2e.login.find_one()
            assert e.value.code == 13
        log = open(proxy.proc.path).read()
        assert "app-pw" not in log and PASSWORD not in log
    finally:
        proxy.stop()
