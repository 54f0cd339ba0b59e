#!/usr/bin/env bash
# Installs everything holdfast's end-to-end tests need (drivers, shells, tools).
#
#   scripts/install-test-deps.sh          # as root on a fresh Debian machine, or in CI (CI=true)
#
# Idempotent and non-interactive: every component keeps a stamp recording what was
# installed; when the stamp matches and a quick import/version check passes, the
# component is skipped, so a warm run takes about a second.
#
# Installs:
#   .venv/py4   pymongo 4.x (latest), backports.zstd, mockupdb, pytest, zstandard, python-snappy
#   .venv/py3   pymongo==3.12.3, pytest            (3.12.3 has no cp311 wheel: built from the sdist)
#   tests/clients/node/node_modules   mongodb 6.x, mongosh 2.x (from package.json / package-lock.json)
#   Debian packages listed in DEBIAN_PACKAGES below (prometheus with promtool, haproxy)
#
# Environment:
#   PYTHON=...         interpreter used to create the virtualenvs (default: python3)
#   FORCE=1            ignore stamps and reinstall everything
#
# Prints one line per component with its version; exits non-zero with a message on failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
FORCE="${FORCE:-0}"
VENV_DIR="$REPO/.venv"
NODE_DIR="$REPO/tests/clients/node"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export npm_config_yes=true npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

# What each virtualenv holds. Changing a line here invalidates that venv's stamp.
# pymongo >= 4.14 does zstd wire compression with compression.zstd (Python 3.14) or its
# backport `backports.zstd`; `zstandard` is what fake_mongod.py and the tests use.
PY4_REQS=("pymongo>=4,<5" "backports.zstd; python_version < '3.14'" "mockupdb" "pytest" "zstandard" "kubernetes-validate" "pyyaml")
PY4_OPTIONAL=("python-snappy")            # installed if it installs; tests skip snappy otherwise
PY3_REQS=("pymongo==3.12.3" "pytest")

# ---------------------------------------------------------------------------------------
# Debian packages. Other parts of the project add their packages here (e.g. prometheus,
# haproxy). `apt-get update` runs at most once per invocation, and only if something is
# actually missing.
DEBIAN_PACKAGES=(
    prometheus
    haproxy
)
# ---------------------------------------------------------------------------------------

die() { echo "install-test-deps: ERROR: $*" >&2; exit 1; }
log() { echo "install-test-deps: $*" >&2; }
report() { printf '%-28s %s\n' "$1" "$2"; }   # the one line per component, on stdout

trap 'rc=$?; [ $rc -ne 0 ] && echo "install-test-deps: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
}
deb_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
apt_install() {   # apt_install PKG...: installs the ones not yet installed
    local missing=() p
    for p in "$@"; do deb_installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
    apt_update_once
    log "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

hash_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# One installer at a time (parallel test jobs may all call this script).
mkdir -p "$VENV_DIR"
exec 9>"$VENV_DIR/.install-test-deps.lock"
if command -v flock >/dev/null; then flock 9; fi

# ---------------------------------------------------------------------------------------
# Debian packages
if [ ${#DEBIAN_PACKAGES[@]} -gt 0 ]; then
    apt_install "${DEBIAN_PACKAGES[@]}"
    for p in "${DEBIAN_PACKAGES[@]}"; do
        report "deb:$p" "$(dpkg-query -W -f='${Version}' "$p")"
    done
fi

# ---------------------------------------------------------------------------------------
# Prerequisites. The project's machines ship python3 (with venv), gcc, node and npm; on a
# plain Debian machine the missing ones come from Debian's packages.
if ! command -v "$PYTHON" >/dev/null; then
    [ "$PYTHON" = python3 ] || die "$PYTHON not found"
    apt_install python3 python3-venv python3-dev
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 8), sys.version' \
    || die "$PYTHON is older than 3.8"
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    [ "$(command -v "$PYTHON")" = /usr/bin/python3 ] \
        || die "$PYTHON lacks venv/ensurepip (set PYTHON=... to an interpreter that has them)"
    apt_install python3-venv python3-dev
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi
command -v node >/dev/null || die "node not found (install Node.js >= 18)"
command -v npm >/dev/null || die "npm not found"

# ---------------------------------------------------------------------------------------
# Python virtualenvs
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

# make_venv NAME CHECK_PY REQ...: (re)creates .venv/NAME unless its stamp matches.
make_venv() {
    local name="$1" check="$2"; shift 2
    local dir="$VENV_DIR/$name" stamp="$VENV_DIR/$name/.holdfast-stamp"
    local want; want="$(hash_of "$PYVER" "$@" "${OPTIONAL[@]}")"
    if [ "$FORCE" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        CREATED=0
        return 0
    fi
    CREATED=1
    log "creating $dir ($PYTHON $PYVER): $*"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir" || die "python -m venv $dir failed"
    "$dir/bin/python" -m pip install -q --upgrade pip setuptools wheel \
        || die "upgrading pip/setuptools/wheel in $dir failed"
    "$dir/bin/python" -m pip install -q "$@" || die "pip install $* into $dir failed"
    local o
    for o in "${OPTIONAL[@]}"; do
        if ! "$dir/bin/python" -m pip install -q "$o"; then
            log "optional $o did not install into $dir; continuing without it"
        fi
    done
    "$dir/bin/python" -c "$check" || die "$dir: import check failed after install"
    echo "$want" >"$stamp"
}

report_venv() {   # report_venv VENV DIST...: one line per distribution, from one interpreter
    "$VENV_DIR/$1/bin/python" - "$@" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
venv, dists = sys.argv[1], sys.argv[2:]
for d in dists:
    try:
        v = version(d)
    except PackageNotFoundError:
        v = "not installed"
    if venv == "py3" and d == "pymongo":
        import pymongo
        v += " (C extensions)" if pymongo.has_c() else " (pure Python: C extensions did not build)"
    print("%-28s %s" % (venv + ":" + d, v))
EOF
}

mkdir -p "$VENV_DIR"

OPTIONAL=("${PY4_OPTIONAL[@]}")
make_venv py4 'import pymongo, mockupdb, pytest, zstandard, bson; assert pymongo.version_tuple[0] == 4
from pymongo.compression_support import _have_zstd; assert _have_zstd()' \
    "${PY4_REQS[@]}"
# snappy: python-snappy >= 0.7 is pure Python on top of cramjam (wheels), so libsnappy is
# normally not needed. Only if the import fails right after (re)creating the venv do we
# try Debian's libsnappy-dev and a rebuild; failing that, snappy is simply left out.
if [ "$CREATED" = 1 ] \
    && ! "$VENV_DIR/py4/bin/python" -c 'import snappy; snappy.compress(b"x")' >/dev/null 2>&1; then
    log "python-snappy unusable in .venv/py4; trying with Debian's libsnappy-dev"
    if (apt_install libsnappy-dev) \
        && "$VENV_DIR/py4/bin/python" -m pip install -q --force-reinstall python-snappy \
        && "$VENV_DIR/py4/bin/python" -c 'import snappy; snappy.compress(b"x")' >/dev/null 2>&1; then
        log "python-snappy installed against libsnappy-dev"
    else
        log "python-snappy unavailable: snappy compression is left out"
    fi
fi

OPTIONAL=()
# pymongo 3.12.3 ships no wheel for Python >= 3.10: pip builds it from the sdist (C
# extensions need gcc + Python headers; if they fail to build pymongo falls back to pure
# Python, which is still correct).
make_venv py3 'import pymongo, pytest; assert pymongo.version == "3.12.3", pymongo.version' \
    "${PY3_REQS[@]}"

report "python" "$PYVER ($("$PYTHON" -c 'import sys; print(sys.executable)'))"
report_venv py4 pymongo mockupdb pytest zstandard backports.zstd python-snappy
report_venv py3 pymongo pytest

# ---------------------------------------------------------------------------------------
# Node clients (tests/clients/node): mongodb driver 6.x and mongosh 2.x
[ -f "$NODE_DIR/package.json" ] || die "$NODE_DIR/package.json missing"

node_stamp="$NODE_DIR/node_modules/.holdfast-stamp"
node_want="$(hash_of "$(node --version)" "$(cat "$NODE_DIR/package.json")" \
    "$(cat "$NODE_DIR/package-lock.json" 2>/dev/null || true)")"
if [ "$FORCE" = 1 ] || [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_want" ] \
    || [ ! -x "$NODE_DIR/node_modules/.bin/mongosh" ]; then
    if [ -f "$NODE_DIR/package-lock.json" ]; then
        log "npm ci in $NODE_DIR"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in $NODE_DIR"
    else
        log "npm install in $NODE_DIR (no package-lock.json yet: it will be created; commit it)"
        (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error >&2) || die "npm install failed in $NODE_DIR"
    fi
    # recompute: npm install may have just written package-lock.json
    node_want="$(hash_of "$(node --version)" "$(cat "$NODE_DIR/package.json")" \
        "$(cat "$NODE_DIR/package-lock.json" 2>/dev/null || true)")"
    echo "$node_want" >"$node_stamp"
fi

report "node" "$(node --version)"
report "npm" "$(npm --version 2>/dev/null)"
report "node:mongodb" "$(cd "$NODE_DIR" && node -p 'require("mongodb/package.json").version')"
msh_ver="$(cd "$NODE_DIR" && node -p 'require("mongosh/package.json").version')"
# run the real binary too (catches a broken install, not just a present package.json)
"$NODE_DIR/node_modules/.bin/mongosh" --version >/dev/null 2>&1 || die "mongosh --version failed"
report "node:mongosh" "$msh_ver"

log "all test dependencies installed"
