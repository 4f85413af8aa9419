#!/bin/sh
# Make Fashion-MNIST available: Debian's package when apt can install it, otherwise archlab's
# own download (official source, checksum-verified). Never substitutes fake data.
PY=${1:-python3}
DEBIAN_DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$DEBIAN_DIR/train-images-idx3-ubyte.gz" ] && [ -z "$ARCHLAB_DATA" ] \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian package dataset-fashion-mnist ..."
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "apt could not install dataset-fashion-mnist; falling back to archlab's download"
fi
exec "$(dirname "$PY")/archlab" data prepare fashion_mnist
