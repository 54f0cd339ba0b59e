"""`holdfast demo` runs the seed scenario straight and through holdfast."""
import os
import re

from conftest import BIN, run


def test_demo_shows_no_read_errors_through_holdfast():
    out = run([os.path.join(BIN, "holdfast"), "demo", "--connections", "50", "--stepdowns", "1", "--pause-secs", "2"], timeout=180)
    row = re.search(r"read errors seen by the app\s+(\d+)\s+(\d+)", out)
    assert row, out
    direct, proxied = int(row.group(1)), int(row.group(2))
    assert proxied == 0, out
    assert direct > 0, out  # the same scenario without holdfast does show errors
    assert re.search(r"reads ok\s+\d+\s+[1-9]\d*", out), out
    # Writes go under holdfast's sessions: none fails through holdfast.
    assert re.search(r"write errors seen by the app\s+\d+\s+0\s*$", out, re.M), out


def counts(out, name):
    row = re.search(rf"{name}\s+(\d+)\s+(\d+)", out)
    assert row, out
    return int(row.group(1)), int(row.group(2))


def test_legacy_demo_is_refused_straight_and_works_through_holdfast():
    out = run([os.path.join(BIN, "holdfast"), "demo", "--legacy", "--connections", "30", "--stepdowns", "1", "--pause-secs", "2"], timeout=180)
    reads_ok = counts(out, "reads ok")
    read_errors = counts(out, "read errors seen by the app")
    assert reads_ok[0] == 0 and read_errors[0] > 0, out   # MongoDB 7.0 refuses every legacy read
    assert reads_ok[1] > 0 and read_errors[1] == 0, out
    assert counts(out, "write errors seen by the app")[1] == 0, out
