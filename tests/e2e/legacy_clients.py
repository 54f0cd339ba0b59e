"""Runs the legacy-driver client programs in tests/clients/legacy.

Each program takes `URI SCENARIO [args]` and prints one JSON object (see
tests/clients/legacy/README.md):

    from legacy_clients import run_client, assert_crud_ok
    out = run_client("py36", proxy.uri, "crud")
    assert_crud_ok(out)

scripts/install-test-deps.sh installs every toolchain and builds every
program, so a missing one is an error here (LegacyClientMissing), never a
skip.
"""
import json
import os
import shutil
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LEGACY = os.path.join(REPO, "tests", "clients", "legacy")
BUILD = os.path.join(LEGACY, "build")
JAVA_DRIVER_JAR = "/usr/share/java/mongo-java-driver.jar"  # Debian's libmongodb-java
PY_CLIENT = os.path.join(LEGACY, "py36", "client.py")

# driver name -> (command line before URI, files that must exist)
_COMMANDS = {
    "py36": ([os.path.join(REPO, ".venv", "py36", "bin", "python"), PY_CLIENT], []),
    "py312": ([os.path.join(REPO, ".venv", "py3", "bin", "python"), PY_CLIENT], []),
    "node2": (["node", os.path.join(LEGACY, "node2", "client.js")],
              [os.path.join(LEGACY, "node2", "node_modules", "mongodb", "package.json")]),
    "node3": (["node", os.path.join(LEGACY, "node3", "client.js")],
              [os.path.join(LEGACY, "node3", "node_modules", "mongodb", "package.json")]),
    "mgo": ([os.path.join(BUILD, "mgo-client")], []),
    "godriver": ([os.path.join(BUILD, "godriver-client")], []),
    "java": (["java", "-cp", os.path.join(BUILD, "java") + os.pathsep + JAVA_DRIVER_JAR, "LegacyClient"],
             [os.path.join(BUILD, "java", "LegacyClient.class"), JAVA_DRIVER_JAR]),
}

DRIVERS = tuple(_COMMANDS)
# The drivers that never send OP_MSG, whatever the server's wire version: against
# MongoDB 5.1+ (and holdfast-sim) they need holdfast's translation.
LEGACY_ONLY = ("py36", "node2", "mgo")
# The others speak OP_MSG to a server of wire version 6 (3.6) or more.
OP_MSG_CAPABLE = ("py312", "node3", "godriver", "java")


class LegacyClientMissing(RuntimeError):
    """A client program or its toolchain is not installed."""


class LegacyClientBroken(AssertionError):
    """A client program exited non-zero, timed out or printed no JSON (a broken
    program, not a driver error: driver errors are reported in the JSON)."""


def command(driver):
    """The command line that runs `driver`'s client program, before its
    arguments; raises LegacyClientMissing if something is not installed."""
    if driver not in _COMMANDS:
        raise ValueError(f"unknown legacy driver {driver!r} (one of {', '.join(DRIVERS)})")
    argv, needed = _COMMANDS[driver]
    exe = argv[0]
    found = os.access(exe, os.X_OK) if os.path.isabs(exe) else shutil.which(exe)
    missing = ([] if found else [exe]) + [p for p in needed if not os.path.exists(p)]
    if missing:
        raise LegacyClientMissing(f"{driver}: missing {', '.join(missing)}; run `bash scripts/install-test-deps.sh`")
    return list(argv)


def run_client(driver, uri, scenario, *args, timeout=None):
    """Runs `driver`'s client program with `URI SCENARIO args` and returns its
    JSON as a dict (with "stderr": the program's last stderr lines). The
    timeout defaults to 60 s plus the scenario's SECONDS."""
    args = [str(a) for a in args]
    if timeout is None:
        timeout = 60 + (float(args[0]) if scenario in ("read-loop", "write-loop") and args else 0)
    argv = command(driver) + [uri, scenario] + args
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        raise LegacyClientBroken(f"{driver} {scenario}: no result within {timeout}s\n"
                                 f"stderr:\n{_tail(e.stderr)}") from None
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    if r.returncode != 0 or not lines:
        raise LegacyClientBroken(f"{driver} {scenario}: exit {r.returncode}\nstdout:\n{_tail(r.stdout)}\n"
                                 f"stderr:\n{_tail(r.stderr)}")
    try:
        out = json.loads(lines[-1])
    except ValueError:
        raise LegacyClientBroken(f"{driver} {scenario}: last line is not JSON: {lines[-1][:500]}\n"
                                 f"stderr:\n{_tail(r.stderr)}") from None
    out["stderr"] = _tail(r.stderr)
    return out


def assert_crud_ok(out):
    """The `crud` scenario went through: every step's result as MongoDB gives it."""
    assert "error" not in out, out
    assert out["inserted"] == 10, out
    assert out["found"] == 10, out
    assert out["batches_seen"] == 4, out   # 10 documents in batches of 3: find + 3 getMores
    assert out["killed"] is True, out
    assert out["dup"]["code"] == 11000, out
    assert out["count"] == 10, out
    assert out["upsert"]["matched"] == 0 and out["upsert"]["upserted_id"] == 100, out
    assert out["deleted"] == 1, out
    assert out["final_count"] == 10, out


def _tail(text, n=2000):
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-n:]
