"""pymongo 4 and 3.12 against holdfast-sim with access control (--auth):
SCRAM-SHA-256 and SCRAM-SHA-1 logins (speculative authentication in the
handshake, mechanism negotiation), Authentication failed / Unauthorized
errors, and TLS with MONGODB-X509. Certificates are made with the openssl
command line for each test, never committed."""
import json
import os

import pytest

from conftest import CLIENT_SUBJECT, PY3, PY4, run

# Runs under either pymongo; prints one JSON line of observations.
CLIENT = r'''
import json, sys
import pymongo
from pymongo.errors import OperationFailure

cfg = json.loads(sys.argv[1])
out = {"pymongo": pymongo.version}


def client(**kw):
    opts = dict(cfg.get("kw", {}))
    opts.update(kw)
    return pymongo.MongoClient(cfg["uri"], serverSelectionTimeoutMS=5000, **opts)


def failure(fn):
    try:
        fn()
    except OperationFailure as e:
        return [e.code, (e.details or {}).get("errmsg")]
    return None


root = client(username="root", password="rootpw", authSource="admin")
root.admin.command("ping")
if cfg.get("create_sha1_user"):
    root.admin.command("createUser", "old", pwd="oldpw", roles=[{"role": "readWrite", "db": "db1"}],
                       mechanisms=["SCRAM-SHA-1"])
    info = root.admin.command("usersInfo", "old", showCredentials=True)["users"][0]
    out["old_mechanisms"] = info["mechanisms"]
    out["old_credentials"] = sorted(info["credentials"])

for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1", None]:
    kw = dict(username="app", password="apppw", authSource="admin")
    if mech:
        kw["authMechanism"] = mech
    c = client(**kw)
    c.db1.t.insert_one({"mech": str(mech)})
    out[str(mech)] = c.db1.t.count_documents({"mech": str(mech)})
    out["db2_" + str(mech)] = failure(lambda: c.db2.t.insert_one({}))
    c.close()

if cfg.get("create_sha1_user"):
    c = client(username="old", password="oldpw", authSource="admin")
    c.db1.t.insert_one({"by": "old"})
    out["old_negotiated"] = c.db1.t.count_documents({"by": "old"})
    c.close()
    out["old_sha256"] = failure(lambda: client(username="old", password="oldpw", authSource="admin",
                                                authMechanism="SCRAM-SHA-256").db1.t.find_one())

out["wrong_password"] = failure(lambda: client(username="app", password="nope", authSource="admin").db1.t.find_one())
out["unknown_user"] = failure(lambda: client(username="ghost", password="x", authSource="admin").db1.t.find_one())
out["unauthenticated"] = failure(lambda: client().db1.t.find_one())

if cfg.get("x509"):
    c = client(authMechanism="MONGODB-X509", tlsCertificateKeyFile=cfg["x509"])
    c.db1.t.insert_one({"by": "x509"})
    out["x509_count"] = c.db1.t.count_documents({"by": "x509"})
    out["x509_user"] = c.admin.command("connectionStatus")["authInfo"]["authenticatedUsers"]
    out["x509_db2"] = failure(lambda: c.db2.t.insert_one({}))
    c.close()

print(json.dumps(out))
'''


USERS = ["--auth", "--user", "root:rootpw", "--user", "app:apppw:readWrite@db1"]


def observe(python, tmp_path, uri, **cfg):
    script = os.path.join(str(tmp_path), "sim_auth_client.py")
    with open(script, "w") as f:
        f.write(CLIENT)
    return json.loads(run([python, script, json.dumps(dict(cfg, uri=uri))]).strip().splitlines()[-1])


def check_scram(out, version_prefix):
    assert out["pymongo"].startswith(version_prefix)
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1", "None"]:
        assert out[mech] == 1, mech
        code, msg = out["db2_" + mech]
        assert code == 13 and msg.startswith("not authorized on db2 to execute command { insert: \"t\""), msg
    assert out["wrong_password"] == [18, "Authentication failed."]
    assert out["unknown_user"] == [18, "Authentication failed."]
    assert out["unauthenticated"] == [13, "command find requires authentication"]


@pytest.mark.parametrize("python,version", [(PY4, "4."), (PY3, "3.12")])
def test_pymongo_scram_against_the_sim_with_auth(make_sim, tmp_path, python, version):
    sim = make_sim(args=USERS)
    out = observe(python, tmp_path, sim.uri, create_sha1_user=True)
    check_scram(out, version)
    # A SCRAM-SHA-1-only user: negotiated through saslSupportedMechs, and
    # refused for SCRAM-SHA-256.
    assert out["old_mechanisms"] == ["SCRAM-SHA-1"]
    assert out["old_credentials"] == ["SCRAM-SHA-1"]
    assert out["old_negotiated"] == 1
    assert out["old_sha256"] == [18, "Authentication failed."]


@pytest.mark.parametrize("python,version", [(PY4, "4."), (PY3, "3.12")])
def test_pymongo_tls_and_x509_against_the_sim(make_sim, tmp_path, pki, python, version):
    sim = make_sim(args=USERS + ["--user", f"{CLIENT_SUBJECT}@$external:readWrite@db1",
                                 "--tls-cert-key-file", pki["server"], "--tls-ca-file", pki["ca"]],
                   client_kw={"tls": True, "tlsCAFile": pki["ca"]})
    assert sim.uri.endswith("&tls=true")
    out = observe(python, tmp_path, sim.uri, kw={"tlsCAFile": pki["ca"]}, x509=pki["client"])
    check_scram(out, version)
    assert out["x509_count"] == 1
    assert out["x509_user"] == [{"user": CLIENT_SUBJECT, "db": "$external"}]
    assert out["x509_db2"][0] == 13
    # Plaintext is refused.
    import pymongo
    plain = pymongo.MongoClient(sim.members[0], directConnection=True, serverSelectionTimeoutMS=1000)
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
        plain.admin.command("ping")
