"""The two builds of holdfast without an upstream: the default one starts an
embedded in-memory replica set and says, on a line of its own, that the data
is lost at exit; the production one (--no-default-features, built by
scripts/test.sh into target/no-sim) refuses to start and names the setting
that is missing."""
import os
import re
import subprocess

from conftest import BIN, REPO, Proc

NO_SIM_TARGET = os.path.join(REPO, "target", "no-sim")
NO_SIM_BIN = os.environ.get("HOLDFAST_NO_SIM_BIN", os.path.join(NO_SIM_TARGET, "debug", "holdfast"))


def no_sim_binary():
    """The --no-default-features binary; built here if scripts/test.sh has not."""
    if not os.access(NO_SIM_BIN, os.X_OK):
        subprocess.run(["cargo", "build", "-p", "holdfast", "--no-default-features", "--bin", "holdfast"],
                       cwd=REPO, check=True, env=dict(os.environ, CARGO_TARGET_DIR=NO_SIM_TARGET),
                       timeout=1800)
    return NO_SIM_BIN


def env_without_upstream():
    return {k: v for k, v in os.environ.items() if k not in ("HOLDFAST_UPSTREAM", "HOLDFAST_CONFIG")}


def in_memory_notice():
    """IN_MEMORY_NOTICE as crates/proxy/src/embedded.rs spells it."""
    src = open(os.path.join(REPO, "crates", "proxy", "src", "embedded.rs")).read()
    m = re.search(r'pub const IN_MEMORY_NOTICE: &str = "([^"]+)";', src)
    assert m, "IN_MEMORY_NOTICE not found in embedded.rs"
    return m.group(1)


def test_the_production_build_refuses_to_start_without_an_upstream(tmp_path):
    r = subprocess.run([no_sim_binary(), "--listen", "127.0.0.1:0", "--admin-listen", ""],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                       env=env_without_upstream())
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "listening on" not in out, out
    # The message names the missing setting in each of its three forms.
    assert "no upstream configured" in out, out
    for setting in ("--upstream", "HOLDFAST_UPSTREAM", "`upstream`"):
        assert setting in out, (setting, out)
    assert "no embedded replica set" in out, out


def test_the_default_build_says_the_embedded_set_is_in_memory(tmp_path):
    config = tmp_path / "embedded.toml"
    config.write_text("embedded_port = 0\n")   # the embedded set on ephemeral ports
    log = str(tmp_path / "holdfast.log")
    p = Proc([os.path.join(BIN, "holdfast"), "--listen", "127.0.0.1:0", "--admin-listen", "",
              "--config", str(config)], log, env=env_without_upstream())
    try:
        p.printed(r"holdfast: listening on (\S+)")
        # A line of its own (the log line that also carries it has more).
        p.printed(re.escape(in_memory_notice()), timeout=5)
        p.printed(r"holdfast: embedded replica set mongodb://\S+ is running", timeout=5)
    finally:
        p.stop()
