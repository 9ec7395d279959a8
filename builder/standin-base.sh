#!/usr/bin/env bash
# A stand-in for the Dockerfile's CUDA base, for machines that cannot pull it (make image-smoke).
#
#   builder/standin-base.sh IMAGE_NAME
#
# The Dockerfile needs of its base what nvidia/cuda's base flavour gives: a Debian-family system
# with apt, where `python3` and `python3-venv` come from the distribution (/usr/bin/python3, the
# venv then at /opt/venv). This builds one from Debian bookworm's packages with mmdebstrap and
# commits it with buildah as IMAGE_NAME. It has no CUDA (none is needed to build the image, and
# torch's wheels bring their own libraries); its Python is bookworm's 3.11 where Ubuntu 22.04's
# is 3.10. The build's pip reaches PyPI through whatever TLS-intercepting proxy this machine
# sits behind, so the host's CA bundle goes into the stand-in's trust store: certificates only,
# never a credential (no pip, apt or proxy configuration is copied).
#
# DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org).
set -euo pipefail
name=${1:?usage: builder/standin-base.sh IMAGE_NAME}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org}
host_ca=/etc/ssl/certs/ca-certificates.crt

work=$(mktemp -d "${TMPDIR:-/tmp}/sdworker-standin.XXXXXX")
container=
cleanup() {
    [ -z "$container" ] || buildah rm "$container" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

hooks=()
if [ -s "$host_ca" ]; then
    cp "$host_ca" "$work/host-ca-bundle.crt"
    hooks+=(
        --customize-hook="copy-in $work/host-ca-bundle.crt /usr/local/share/ca-certificates"
        --customize-hook='chroot "$1" update-ca-certificates >/dev/null'
    )
fi

# minbase: apt and the essential packages, as a distribution's container image has them
mmdebstrap --quiet --variant=minbase --include=ca-certificates --format=tar \
    "${hooks[@]}" bookworm "$work/rootfs.tar" \
    "deb $mirror/debian bookworm main" \
    "deb $mirror/debian bookworm-updates main" \
    "deb $mirror/debian-security bookworm-security main" </dev/null

container=$(buildah from scratch)
buildah add --quiet "$container" "$work/rootfs.tar" / >/dev/null
# what nvidia/cuda's images set for the NVIDIA container toolkit, so that the environment the
# Dockerfile builds on is the same
buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NVIDIA_VISIBLE_DEVICES=all \
    --env NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    --label org.opencontainers.image.description="a stand-in for nvidia/cuda's base, from Debian bookworm (builder/standin-base.sh)" \
    --cmd /bin/bash "$container"
buildah commit --quiet --format docker --rm "$container" "$name" >/dev/null
container=
