#!/usr/bin/env bash
# Install the real, full Fashion-MNIST (SPEC §4) from the Debian package dataset-fashion-mnist and
# print the folder holding its four IDX files (the default dataset.root of `fashion_mnist`):
#   /usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
# Needs apt (Debian / Ubuntu) and root or sudo; does nothing when the files are already there.
set -euo pipefail

ROOT=/usr/share/datasets/fashion-mnist
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
       t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

have_all() {
    local f
    for f in "${FILES[@]}"; do [[ -f "$ROOT/$f" ]] || return 1; done
}

if ! have_all; then
    if ! command -v apt-get >/dev/null; then
        echo "error: apt-get not found; get the four IDX files of" \
             "https://github.com/zalandoresearch/fashion-mnist and set dataset.root" >&2
        exit 1
    fi
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "error: run as root or install sudo" >&2; exit 1; }
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when apt does not know the package yet.
    if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then
        "${SUDO[@]}" apt-get update >&2
    fi
    "${SUDO[@]}" apt-get install -y --no-install-recommends dataset-fashion-mnist >&2
    have_all || { echo "error: dataset-fashion-mnist installed but $ROOT is incomplete" >&2; exit 1; }
fi

echo "$ROOT"
