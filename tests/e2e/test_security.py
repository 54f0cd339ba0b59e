"""holdfast in front of a replica set with access control and TLS on both
sides (holdfast-sim --auth --tls-cert-key-file), with real clients:

- clients log in to holdfast (users file) with SCRAM-SHA-256 / SCRAM-SHA-1
  over TLS, and each user's requests run upstream as that user (its own
  backend connections): the replica set's roles apply per user, also for a
  user holdfast knows only by its SCRAM secret;
- refusals (wrong password, no credentials, plaintext against the TLS
  listener, an untrusted upstream certificate) are clear and fast;
- SIGHUP adds and removes users; mutual TLS with MONGODB-X509;
- the seed scenario (readers across stepdowns and a shutdown) still gives
  no read error with authentication and TLS on both sides;
- no password, SCRAM secret or private key ever reaches holdfast's log.

Certificates are made with openssl for each test (conftest's `pki`)."""
import json
import os
import signal
import threading
import time

import pymongo
import pytest
from pymongo.errors import OperationFailure, PyMongoError, ServerSelectionTimeoutError

from conftest import CLIENT_SUBJECT, NODE_DIR, PY3, PY4, Holdfast, Sim, run, wait_until
from legacy_clients import assert_crud_ok, run_client
from test_failover import LEGACY
from test_scenarios import failovers
from test_sim_auth import check_scram, observe

SVC_PW = "svc-Pw-7q"
# root and app as test_sim_auth's observing script logs in.
PASSWORDS = {"root": "rootpw", "app": "apppw", "one": "onepw-2m", "two": "twopw-5z"}
APP_DBS = ["db1", "e2e_node", "e2e_mongosh", "legacy", "app"]
SIM_USERS = [
    "--auth",
    # holdfast's upstream identity may only use db1 (so a request that runs
    # as it instead of as the client's user shows).
    "--user", f"svc:{SVC_PW}:readWrite@db1",
    "--user", f"root:{PASSWORDS['root']}:root@admin",
    "--user", f"app:{PASSWORDS['app']}:" + ",".join(f"readWrite@{d}" for d in APP_DBS),
    "--user", f"one:{PASSWORDS['one']}:readWrite@one",
    "--user", f"two:{PASSWORDS['two']}:readWrite@two",
]


def with_credentials(uri, user, password):
    return uri.replace("mongodb://", f"mongodb://{user}:{password}@", 1)


def scram_secret(sim, user, mechanism="SCRAM-SHA-256"):
    """`user`'s SCRAM secret as the replica set stores it (usersInfo with
    showCredentials), in the users file's text form."""
    with pymongo.MongoClient(sim.uri, **sim.client_kw) as c:
        info = c.admin.command("usersInfo", user, showCredentials=True)["users"][0]
    cred = info["credentials"][mechanism]
    return f"{mechanism}${cred['iterationCount']}:{cred['salt']}${cred['storedKey']}:{cred['serverKey']}"


class Secure:
    """holdfast-sim with access control and TLS, and holdfast in front of
    it with a users file and TLS towards clients."""

    def __init__(self, tmp, pki, users=None, extra_config=""):
        self.tmp, self.pki = tmp, pki
        self.sim = Sim(tmp, args=SIM_USERS + ["--tls-cert-key-file", pki["server"]],
                       client_kw=dict(username="root", password=PASSWORDS["root"], tls=True,
                                      tlsCAFile=pki["ca"]))
        self.secrets = [scram_secret(self.sim, "two")]
        self.users_file = os.path.join(tmp, "users.toml")
        self.write_users(users or ["root", "app", "one", "two"])
        cfg = os.path.join(tmp, "holdfast-secure.toml")
        with open(cfg, "w") as f:
            f.write(f'users_file = "{self.users_file}"\n'
                    f'tls_cert_file = "{pki["server_crt"]}"\ntls_key_file = "{pki["server_key"]}"\n'
                    + extra_config)
        upstream = with_credentials(self.sim.uri, "svc", SVC_PW) + f"&tlsCAFile={pki['ca']}"
        self.proxy = Holdfast(tmp, upstream, "--config", cfg)
        self.uri = self.proxy.uri + f"?tls=true&tlsCAFile={pki['ca']}"

    def write_users(self, names):
        lines = []
        for n in names:
            lines.append(f'[[user]]\nname = "{n}"\n')
            if n == "two":   # known to holdfast by its SCRAM secret only
                lines.append(f'scram_sha256 = "{self.secrets[0]}"\n')
            else:
                lines.append(f'password = "{PASSWORDS[n]}"\n')
        with open(self.users_file, "w") as f:
            f.write("".join(lines))

    def client(self, user=None, **kw):
        opts = dict(tls=True, tlsCAFile=self.pki["ca"], serverSelectionTimeoutMS=10000)
        if user:
            opts.update(username=user, password=PASSWORDS[user], authSource="admin")
        opts.update(kw)
        return pymongo.MongoClient(self.proxy.uri, **opts)

    def log(self):
        with open(self.proxy.proc.path) as f:
            return f.read()

    def assert_no_secret_in_log(self):
        log = self.log()
        for secret in [SVC_PW, *PASSWORDS.values(), "PRIVATE KEY"] + self.secrets + \
                [s.split("$")[2] for s in self.secrets]:
            assert secret not in log, f"a secret reached holdfast's log: {secret[:6]}…"

    def stop(self):
        self.proxy.stop()
        self.sim.stop()


@pytest.fixture
def secure(tmp_path, pki):
    s = Secure(str(tmp_path), pki)
    yield s
    s.assert_no_secret_in_log()
    s.stop()


@pytest.mark.parametrize("python,version", [(PY4, "4."), (PY3, "3.12")])
def test_pymongo_logs_in_to_holdfast_over_tls_and_runs_as_its_own_user(secure, tmp_path, python, version):
    # The observing script logs in as root and app with each mechanism;
    # app's insert into db2 is refused by the replica set itself, which
    # proves app's requests run upstream as app, not as holdfast's identity.
    out = observe(python, tmp_path, secure.uri)
    check_scram(out, version)
    assert secure.proxy.metric("holdfast_client_authentications_total", mechanism="SCRAM-SHA-1", outcome="ok") >= 1
    assert secure.proxy.metric("holdfast_backend_logins_total", outcome="ok") >= 1


def test_node_mongosh_and_go_drivers_through_holdfast_over_tls(secure):
    uri = with_credentials(secure.uri, "app", PASSWORDS["app"])
    out = run(["node", os.path.join(NODE_DIR, "scenario.mjs"), uri, secure.proxy.addr])
    assert '"node":"ok"' in out
    mongosh = os.path.join(NODE_DIR, "node_modules", ".bin", "mongosh")
    out = run([mongosh, uri, "--quiet", "--norc", "--file", os.path.join(NODE_DIR, "mongosh_scenario.js")])
    assert "mongosh-ok" in out
    out = run_client("godriver", uri, "crud")
    assert_crud_ok(out)
    # Each ran as app upstream: app's backend connections, not holdfast's.
    with secure.client("app") as c:
        users = c.admin.command("connectionStatus")["authInfo"]["authenticatedUsers"]
    assert users == [{"user": "app", "db": "admin"}]


def test_two_users_work_at_once_each_with_its_own_rights(secure):
    """one (password in the users file) and two (only its SCRAM secret in
    the file): 12 connections each at once; every write into the user's own
    database succeeds, every write into the other's fails with 13."""
    results = {"one": [0, 0, []], "two": [0, 0, []]}   # own ok, foreign refused, unexpected
    lock = threading.Lock()

    def work(user, other, k):
        c = secure.client(user, maxPoolSize=2)
        try:
            for i in range(15):
                c[user].t.insert_one({"k": k, "i": i})
                assert c[user].t.find_one({"k": k, "i": i}) is not None
                try:
                    c[other].t.insert_one({"by": user})
                    outcome = "accepted"
                except OperationFailure as e:
                    outcome = e.code
                with lock:
                    results[user][0] += 1
                    if outcome == 13:
                        results[user][1] += 1
                    else:
                        results[user][2].append(outcome)
        except PyMongoError as e:
            with lock:
                results[user][2].append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(u, o, k))
               for k in range(12) for u, o in (("one", "two"), ("two", "one"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for user in ("one", "two"):
        ok, refused, unexpected = results[user]
        assert unexpected == [], (user, unexpected[:3])
        assert ok == refused == 12 * 15, (user, results[user])
    with secure.client("root") as root:
        for user in ("one", "two"):
            assert root[user].t.count_documents({}) == 12 * 15
            assert root[user].t.count_documents({"by": {"$exists": True}}) == 0
    # two's backend connections logged in upstream as two, with the key
    # recovered from its own login (holdfast never had its password).
    with secure.client("two") as c:
        users = c.admin.command("connectionStatus")["authInfo"]["authenticatedUsers"]
    assert users == [{"user": "two", "db": "admin"}]


def test_refusals_are_clear(secure):
    with secure.client("app", password="wrong") as c:
        with pytest.raises(OperationFailure) as e:
            c.db1.t.find_one()
    assert (e.value.code, e.value.details["errmsg"]) == (18, "Authentication failed.")
    with secure.client() as c:
        with pytest.raises(OperationFailure) as e:
            c.db1.t.find_one()
    assert e.value.code == 13
    # A plaintext client against the TLS listener gets no MongoDB session.
    before = secure.proxy.metric("holdfast_tls_handshake_failures_total", side="client")
    with pymongo.MongoClient(secure.proxy.uri, serverSelectionTimeoutMS=1500) as plain:
        with pytest.raises(ServerSelectionTimeoutError):
            plain.admin.command("ping")
    assert secure.proxy.metric("holdfast_tls_handshake_failures_total", side="client") > before
    assert "client TLS handshake failed" in secure.log()
    # A cursor opened by one user cannot be continued by another.
    with secure.client("app") as a, secure.client("one") as b:
        a.db1.c.insert_many([{"i": i} for i in range(10)])
        cursor_id = a.db1.command("find", "c", batchSize=2)["cursor"]["id"]
        with pytest.raises(OperationFailure) as e:
            b.db1.command("getMore", cursor_id, collection="c")
        assert e.value.code == 13 and "was not created by the authenticated user" in e.value.details["errmsg"]
        assert len(a.db1.command("getMore", cursor_id, collection="c")["cursor"]["nextBatch"]) == 8


def test_sighup_adds_and_removes_users(secure):
    connected = secure.client("app")
    connected.db1.t.insert_one({"before": 1})
    secure.write_users(["root", "one"])      # app removed; one stays
    secure.proxy.proc.p.send_signal(signal.SIGHUP)
    wait_until(lambda: secure.log().count("users file reloaded") >= 1, 10, "reload")
    with secure.client("app") as c:
        with pytest.raises(OperationFailure) as e:
            c.db1.t.find_one()
        assert e.value.code == 18
    # A client logged in before the reload keeps working.
    assert connected.db1.t.find_one({"before": 1}) is not None
    connected.close()
    secure.write_users(["root", "one", "app"])
    secure.proxy.proc.p.send_signal(signal.SIGHUP)
    wait_until(lambda: secure.log().count("users file reloaded") >= 2, 10, "second reload")
    with secure.client("app") as c:
        assert c.db1.t.find_one({"before": 1}) is not None
    # A file that does not load leaves the users as they were.
    with open(secure.users_file, "w") as f:
        f.write("[[user]]\nname = \n")
    secure.proxy.proc.p.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in secure.log(), 10, "failed reload")
    with secure.client("app") as c:
        assert c.db1.t.find_one({"before": 1}) is not None


def test_mutual_tls_and_x509_users(tmp_path, pki):
    s = Secure(str(tmp_path), pki, extra_config=f'tls_client_ca_file = "{pki["ca"]}"\n')
    try:
        with open(s.users_file, "a") as f:
            f.write(f'[[user]]\nname = "{CLIENT_SUBJECT}"\ndb = "$external"\nupstream = "service"\n')
        s.proxy.proc.p.send_signal(signal.SIGHUP)
        wait_until(lambda: "users file reloaded" in s.log(), 10, "reload")
        cert = dict(tlsCertificateKeyFile=pki["client"])
        with s.client(authMechanism="MONGODB-X509", **cert) as c:
            c.db1.t.insert_one({"by": "x509"})
            assert c.db1.t.count_documents({"by": "x509"}) == 1
            # It runs upstream as holdfast's identity (upstream = "service"),
            # which may not write db2.
            with pytest.raises(OperationFailure) as e:
                c.db2.t.insert_one({})
            assert e.value.code == 13
        # SCRAM works over mutual TLS too (the certificate is required).
        with s.client("app", **cert) as c:
            assert c.db1.t.count_documents({"by": "x509"}) == 1
        with s.client("app", serverSelectionTimeoutMS=1500) as c:
            with pytest.raises(ServerSelectionTimeoutError):
                c.db1.t.find_one()
        s.assert_no_secret_in_log()
    finally:
        s.stop()


def test_untrusted_upstream_certificate_is_a_clear_fast_error(tmp_path, pki):
    sim = Sim(str(tmp_path), args=SIM_USERS + ["--tls-cert-key-file", pki["server"]],
              client_kw=dict(username="root", password=PASSWORDS["root"], tls=True, tlsCAFile=pki["ca"]))
    # No tlsCAFile: the members' certificates do not chain to a trusted CA.
    proxy = Holdfast(str(tmp_path), with_credentials(sim.uri, "svc", SVC_PW), wait_ready=False)
    try:
        assert proxy.http("/readyz")[0] != 200
        c = pymongo.MongoClient(proxy.uri, serverSelectionTimeoutMS=10000, retryReads=False)
        t0 = time.time()
        with pytest.raises(OperationFailure) as e:
            c.db1.t.find_one()
        assert time.time() - t0 < 10, "refused, not held for hold_timeout_ms"
        msg = e.value.details["errmsg"]
        assert "certificate" in msg and "TLS" in msg, msg
        assert proxy.metric("holdfast_tls_handshake_failures_total", side="upstream") >= 1
        log = open(proxy.proc.path).read()
        assert "certificate" in log and SVC_PW not in log
    finally:
        proxy.stop()
        sim.stop()


def test_seed_scenario_with_authentication_and_tls_gives_no_read_error(secure):
    with secure.client("app") as setup:
        setup.app.items.insert_many([{"_id": i, "v": i} for i in range(100)])
    client = secure.client("app", maxPoolSize=100, **LEGACY)
    coll = client.app.items
    stop = threading.Event()
    errors, reads = [], [0]
    lock = threading.Lock()

    def reader(k):
        while not stop.is_set():
            try:
                assert coll.find_one({"_id": k % 100})["v"] == k % 100
                with lock:
                    reads[0] += 1
            except PyMongoError as e:
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(100)]
    for t in threads:
        t.start()
    failovers(secure.sim, stepdowns=3, shutdown=True)
    stop.set()
    for t in threads:
        t.join(60)
    client.close()
    print("seed scenario with auth and TLS:", json.dumps({"reads": reads[0], "errors": len(errors)}))
    assert errors == [], errors[:5]
    assert reads[0] > 1000


def test_scram_secret_helper_and_flags(tmp_path, pki, sim):
    """`holdfast scram-secret` turns a password into a users-file secret
    (the password never lands in the file); the TLS and users settings as
    flags and environment variables."""
    import subprocess
    from conftest import BIN
    secret = subprocess.run([os.path.join(BIN, "holdfast"), "scram-secret", "--user", "rep"],
                            input="rep-Pw-1\n", capture_output=True, text=True, check=True).stdout.strip()
    assert secret.startswith("SCRAM-SHA-256$15000:") and "rep-Pw-1" not in secret
    users = tmp_path / "users.toml"
    users.write_text(f'[[user]]\nname = "rep"\nscram_sha256 = "{secret}"\nupstream = "service"\n')
    env = dict(os.environ, HOLDFAST_TLS_KEY_FILE=pki["server_key"])
    proxy = Holdfast(str(tmp_path), sim.uri, "--users-file", str(users), "--tls-cert-file", pki["server_crt"],
                     env=env)
    try:
        with pymongo.MongoClient(proxy.uri, tls=True, tlsCAFile=pki["ca"], username="rep", password="rep-Pw-1",
                                 serverSelectionTimeoutMS=10000) as c:
            c.db1.t.insert_one({"by": "rep"})
            assert c.db1.t.count_documents({"by": "rep"}) == 1
        assert "rep-Pw-1" not in open(proxy.proc.path).read()
    finally:
        proxy.stop()


def test_a_mongodb_srv_upstream_is_resolved_as_drivers_resolve_it(tmp_path, pki):
    """Atlas-style `mongodb+srv://`: holdfast finds the members through SRV
    records, takes replicaSet and authSource from the TXT record, and uses
    TLS (implied by +srv). DNS is served inside a network namespace of the
    test's own (`unshare`), so the machine's resolver is untouched."""
    from conftest import BIN, REPO
    script = os.path.join(REPO, "tests", "e2e", "srv_world.py")
    out = run(["unshare", "-n", "-m", PY4, script, BIN, pki["ca"], pki["server"], str(tmp_path)], timeout=120)
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["count"] == 1, seen
    assert seen["user"] == [{"user": "svc", "db": "admin"}], seen
    assert "SRV _mongodb._tcp.cluster0.holdfast.test" in seen["asked"], seen
    assert "TXT cluster0.holdfast.test" in seen["asked"], seen
    assert seen["tls"] and not seen["log_has_password"], seen
