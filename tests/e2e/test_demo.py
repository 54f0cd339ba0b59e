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
