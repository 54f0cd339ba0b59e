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
#   .venv/py4   pymongo 4.x (latest), backports.zstd, mockupdb, pytest, zstandard, python-snappy, dnslib
#   .venv/py3   pymongo==3.12.3, pytest            (3.12.3 has no cp311 wheel: built from the sdist)
#   tests/clients/node/node_modules   mongodb 6.x, mongosh 2.x (from package.json / package-lock.json)
#   Debian packages listed in DEBIAN_PACKAGES below (prometheus with promtool, haproxy, and
#               the legacy drivers' Go and Java packages)
#   legacy drivers, for the legacy-opcode tests (tests/clients/legacy):
#     .venv/py36                        pymongo==3.6.1, pure Python (its C extensions are removed)
#     tests/clients/legacy/node2, node3 mongodb 2.2.36 and 3.7.x (npm ci from package-lock.json)
#     tests/clients/legacy/build/       mgo-client (mgo r2016.08.01), godriver-client (Go driver
#                                       1.8.4), java/ (LegacyClient, Java driver 3.6.3): built
#                                       offline from Debian's packages
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
LEGACY_DIR="$REPO/tests/clients/legacy"
LEGACY_BUILD="$LEGACY_DIR/build"
JAVA_DRIVER_JAR=/usr/share/java/mongo-java-driver.jar   # from libmongodb-java (driver, core and bson)

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export npm_config_yes=true npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

# What each virtualenv holds. Changing a line here invalidates that venv's stamp.
# pymongo >= 4.14 does zstd wire compression with compression.zstd (Python 3.14) or its
# backport `backports.zstd`; `zstandard` is what fake_mongod.py and the tests use.
PY4_REQS=("pymongo>=4,<5" "backports.zstd; python_version < '3.14'" "mockupdb" "pytest" "zstandard" "kubernetes-validate" "pyyaml" "dnslib")
PY4_OPTIONAL=("python-snappy")            # installed if it installs; tests skip snappy otherwise
PY3_REQS=("pymongo==3.12.3" "pytest")
PY36_REQS=("pymongo==3.6.1")

# ---------------------------------------------------------------------------------------
# Debian packages. Other parts of the project add their packages here (e.g. prometheus,
# haproxy). `apt-get update` runs at most once per invocation, and only if something is
# actually missing.
DEBIAN_PACKAGES=(
    prometheus
    haproxy
    # test certificates (tests/e2e/conftest.py) and the mongodb+srv test's
    # network namespace (unshare from util-linux, ip from iproute2)
    openssl
    util-linux
    iproute2
    # legacy drivers (tests/clients/legacy): Go 1.19 with mgo (2016) and the Go driver 1.8.4
    # as GOPATH sources, the Java driver 3.6.3 as jars in /usr/share/java
    golang-go
    golang-gopkg-mgo.v2-dev
    golang-mongodb-mongo-driver-dev
    libmongodb-java
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
    local want; want="$(hash_of "$PYVER" "$@" "${OPTIONAL[@]}" ${POST_INSTALL:+"$POST_INSTALL"})"
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
    if [ -n "${POST_INSTALL:-}" ]; then
        "$POST_INSTALL" "$dir" || die "$dir: $POST_INSTALL failed"
    fi
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
    if venv in ("py3", "py36") and d == "pymongo":
        import pymongo
        if pymongo.has_c():
            v += " (C extensions)"
        else:
            v += " (pure Python)" if venv == "py36" else " (pure Python: C extensions did not build)"
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

# pymongo 3.6.1 (a legacy driver: never OP_MSG). Its C extensions build on Python >= 3.10 but
# fail at run time (SystemError: PY_SSIZE_T_CLEAN macro must be defined), so they are
# deleted after the install and pymongo falls back to its pure-Python BSON and messages.
pymongo_pure_python() {
    find "$1" \( -name '_cmessage*.so' -o -name '_cbson*.so' \) -print -delete >&2
}
POST_INSTALL=pymongo_pure_python
make_venv py36 'import pymongo, bson
from bson.codec_options import DEFAULT_CODEC_OPTIONS
from pymongo import message
assert pymongo.version == "3.6.1", pymongo.version
assert not pymongo.has_c() and not bson.has_c(), "C extensions still present"
assert bson.BSON(bson.BSON.encode({"a": "x", "n": 1})).decode() == {"a": "x", "n": 1}
message.query(0, "admin.$cmd", 0, -1, {"ismaster": 1}, None, DEFAULT_CODEC_OPTIONS)
pymongo.MongoClient("mongodb://127.0.0.1:1/", connect=False).close()' \
    "${PY36_REQS[@]}"
POST_INSTALL=

report "python" "$PYVER ($("$PYTHON" -c 'import sys; print(sys.executable)'))"
report_venv py4 pymongo mockupdb pytest zstandard backports.zstd python-snappy
report_venv py3 pymongo pytest
report_venv py36 pymongo

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

# ---------------------------------------------------------------------------------------
# Legacy drivers (tests/clients/legacy): the old drivers whose wire formats holdfast
# translates. Each is installed or built from what is committed here and Debian's
# packages, with no network beyond npm and Debian (no Go module proxy, no Maven).

# stamped NAME WANT CHECK_CMD...: true when NAME's stamp says WANT and CHECK_CMD succeeds.
stamped() {
    local stamp="$LEGACY_BUILD/.$1-stamp" want="$2"; shift 2
    [ "$FORCE" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$@" >/dev/null 2>&1
}
stamp() { mkdir -p "$LEGACY_BUILD" && echo "$2" >"$LEGACY_BUILD/.$1-stamp"; }
deb_version() { dpkg-query -W -f='${Version}' "$1"; }

# Node drivers 2.2.36 and 3.7.x, each in its own folder from its package-lock.json.
for d in node2 node3; do
    dir="$LEGACY_DIR/$d"
    [ -f "$dir/package-lock.json" ] || die "$dir/package-lock.json missing"
    want="$(hash_of "$(node --version)" "$(cat "$dir/package.json" "$dir/package-lock.json")")"
    if ! stamped "$d" "$want" test -f "$dir/node_modules/mongodb/package.json"; then
        log "npm ci in $dir"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in $dir"
        stamp "$d" "$want"
    fi
    report "legacy:$d:mongodb" "$(cd "$dir" && node -p 'require("mongodb/package.json").version')"
done

# Go programs, built in GOPATH mode against Debian's sources in /usr/share/gocode (Debian
# ships them that way; a module build would need the module proxy).
command -v go >/dev/null || die "go not found (Debian package golang-go)"
go_build() {   # go_build NAME DEB: builds $LEGACY_DIR/NAME/main.go into build/NAME-client
    local name="$1" deb="$2" out="$LEGACY_BUILD/$1-client"
    local want; want="$(hash_of "$(go version)" "$deb $(deb_version "$deb")" "$(cat "$LEGACY_DIR/$name/main.go")")"
    if ! stamped "$name" "$want" test -x "$out"; then
        log "go build $out"
        mkdir -p "$LEGACY_BUILD"
        (cd "$LEGACY_DIR" && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= \
            GOCACHE="$LEGACY_BUILD/go-cache" go build -o "$out" "./$name" >&2) \
            || die "go build of $LEGACY_DIR/$name failed"
        stamp "$name" "$want"
    fi
    report "legacy:$name" "$deb $(deb_version "$deb") -> ${out#"$REPO/"}"
}
report "go" "$(go version | cut -d' ' -f3)"
go_build mgo golang-gopkg-mgo.v2-dev
go_build godriver golang-mongodb-mongo-driver-dev

# Java: LegacyClient compiled against the Java driver 3.6.3 jar. libmongodb-java brings a
# Java runtime; the compiler comes from default-jdk-headless if no javac is on the PATH.
command -v javac >/dev/null || apt_install default-jdk-headless
command -v javac >/dev/null || die "javac not found (Debian package default-jdk-headless)"
[ -f "$JAVA_DRIVER_JAR" ] || die "$JAVA_DRIVER_JAR missing (dpkg -L libmongodb-java)"
java_out="$LEGACY_BUILD/java"
javac_version="$(javac -version 2>&1 | cut -d' ' -f2)"
java_want="$(hash_of "$javac_version" "$(deb_version libmongodb-java)" "$(cat "$LEGACY_DIR/java/LegacyClient.java")")"
if ! stamped java "$java_want" test -f "$java_out/LegacyClient.class"; then
    log "javac $LEGACY_DIR/java/LegacyClient.java"
    rm -rf "$java_out" && mkdir -p "$java_out"
    javac -nowarn -cp "$JAVA_DRIVER_JAR" -d "$java_out" "$LEGACY_DIR/java/LegacyClient.java" >&2 \
        || die "javac of LegacyClient.java failed"
    stamp java "$java_want"
fi
report "javac" "$javac_version"
report "legacy:java" "libmongodb-java $(deb_version libmongodb-java) -> ${java_out#"$REPO/"}"

log "all test dependencies installed"
