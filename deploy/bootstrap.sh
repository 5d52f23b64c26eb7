#!/bin/sh
# Prepare a machine and this checkout for Mamoru: a virtualenv in .venv with Mamoru and its
# development tools, plus the system packages it needs. Safe to run again; does nothing that is
# already done. Environment:
#   PYTHON=python3.12          interpreter to build the virtualenv with (>= 3.11)
#   VENV=.venv                 where the virtualenv goes
#   MAMORU_SKIP_APT=1          never call apt-get (print what to install instead)
set -eu

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

is_root() { [ "$(id -u)" = "0" ]; }

apt_install() {
    # $@: Debian packages. Installs them when we are root, otherwise says how.
    if is_root && [ "${MAMORU_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing $* with apt-get" >&2
        if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -n 1)" ]; then
            apt-get update -q >&2
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
        return 0
    fi
    echo "bootstrap: please run: sudo apt-get install -y $*" >&2
    return 1
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "bootstrap: $PYTHON not found; install Python 3.11 or newer (sudo apt-get install -y python3)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: $("$PYTHON" --version) is too old; Mamoru needs Python 3.11 or newer (set PYTHON=...)" >&2
    exit 1
fi
# Debian splits venv/ensurepip out of the interpreter package.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    minor="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt_install "python${minor}-venv" || exit 1
fi

# Chromium renders JavaScript-heavy pirate sites (Playwright drives it). On machines where
# Playwright can download browsers, `playwright install chromium` is the alternative.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    apt_install chromium || echo "bootstrap: continuing without Chromium (needed for JavaScript crawls)" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating virtualenv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.mamoru-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing Mamoru and its dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' >&2
    touch "$stamp"
fi
