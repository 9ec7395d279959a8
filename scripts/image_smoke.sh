#!/usr/bin/env bash
# The Docker image, built and run for real (make image-smoke; CI runs it).
#
# Builds the Dockerfile with buildah (no daemon: `buildah bud --isolation chroot`, in Docker's
# format, which keeps the Dockerfile's SHELL and so its pipefail) with MODEL_ID=tiny. Where the
# CUDA base cannot be pulled it builds on a stand-in with the same Python layout, from Debian
# packages (builder/standin-base.sh), and says so. Then, inside the built image:
#   - the torch and xformers pair, from xformers' own build information;
#   - `sdworker worker` on test_input.json in RunPod's local mode: the image it returns, and no
#     ERROR or WARNING line;
#   - `sdworker serve` and one /runsync job over HTTP;
#   - the unit tests, against the image's own torch and packages;
# and prints the image's size and its five largest layers.
#
# Root (or user namespaces) is needed; buildah and mmdebstrap are installed with apt where
# missing, as root. A machine where buildah cannot run fails this check; it never passes
# without building. What can be kept between runs on one machine (the stand-in base, pip's
# downloads, buildah's layers) is kept in SDWORKER_IMAGE_CACHE (default
# ~/.cache/sdworker-image-smoke), outside the clone; it is emptied when it grows past
# SDWORKER_IMAGE_CACHE_GB (default 40).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

say() { echo "image smoke ($((SECONDS - started)) s): $*"; }
fail() {
    echo "image smoke: FAILED: $*" >&2
    exit 1
}

cache=${SDWORKER_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sdworker-image-smoke}
limit_gb=${SDWORKER_IMAGE_CACHE_GB:-40}
cuda_image=$(sed -n 's/^ARG CUDA_IMAGE=//p' Dockerfile)
[ -n "$cuda_image" ] || fail "the Dockerfile has no ARG CUDA_IMAGE"
[ -x .venv/bin/python ] || fail "needs .venv (make setup)"

# -- the tools ---------------------------------------------------------------------------------
missing=()
for tool in buildah mmdebstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} with apt"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            "${missing[@]}"; } >/dev/null || fail "apt-get install ${missing[*]}"
    else
        fail "needs ${missing[*]}: as root, apt-get install buildah mmdebstrap"
    fi
fi

mkdir -p "$cache/storage" "$cache/tmp" "$cache/pip"
# one run at a time on a machine: they share the cache
exec 9>"$cache/lock"
flock -w 3600 9 || fail "another image smoke held $cache/lock for an hour"
cat >"$cache/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "${XDG_RUNTIME_DIR:-/tmp}/sdworker-image-smoke-$(id -u)"
EOF
# buildah's own storage, and its RUN cache mounts ($TMPDIR/buildah-cache-UID), in the cache
export CONTAINERS_STORAGE_CONF=$cache/storage.conf TMPDIR=$cache/tmp
export BUILDAH_ISOLATION=chroot

work=$(mktemp -d "$cache/tmp/run.XXXXXX")
container=
image=localhost/sdworker-smoke:$$
cleanup() {
    [ -z "$container" ] || buildah rm "$container" >/dev/null 2>&1 || true
    buildah rmi "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# buildah must work here: a machine where it cannot (not root, no user namespaces) fails
if [ "$(id -u)" != 0 ] && ! buildah unshare true 2>"$work/unshare.err"; then
    fail "buildah cannot run here (not root, and no user namespaces): $(cat "$work/unshare.err")"
fi
probe=$(buildah from scratch 2>"$work/probe.err") ||
    fail "buildah cannot run here: $(cat "$work/probe.err")"
buildah rm "$probe" >/dev/null

used_gb=$(($(du -sm "$cache/storage" | cut -f1) / 1024))
if [ "$used_gb" -gt "$limit_gb" ]; then
    say "the cache holds ${used_gb} GB, over ${limit_gb} GB: emptying it"
    buildah rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$cache/tmp/buildah-cache-"*
fi

# -- the base ----------------------------------------------------------------------------------
if timeout 300 buildah pull --quiet "$cuda_image" >/dev/null 2>"$work/pull.err"; then
    base=$cuda_image pull=false
    say "base: $cuda_image"
else
    why=$(grep -v '^Trying' "$work/pull.err" | tail -1 | cut -c1-300)
    recipe=$(cat builder/standin-base.sh /etc/ssl/certs/ca-certificates.crt 2>/dev/null |
        sha256sum | cut -c1-12)
    base=localhost/sdworker-standin-base:$recipe pull=never
    say "the CUDA base $cuda_image cannot be pulled here ($why)"
    say "so the image builds on a STAND-IN base with the same Python layout, from Debian" \
        "bookworm's packages (builder/standin-base.sh): no CUDA, Python 3.11 for Ubuntu's 3.10"
    if buildah inspect --type image "$base" >/dev/null 2>&1; then
        say "stand-in base $base: from the cache"
    else
        for old in $(buildah images --noheading --format '{{.Name}}:{{.Tag}}' |
            grep '^localhost/sdworker-standin-base:'); do
            buildah rmi "$old" >/dev/null 2>&1 || true
        done
        say "building the stand-in base $base (mmdebstrap)"
        bash builder/standin-base.sh "$base" >"$work/standin.log" 2>&1 || {
            tail -40 "$work/standin.log"
            fail "builder/standin-base.sh"
        }
    fi
fi

# -- the build ---------------------------------------------------------------------------------
say "buildah bud --isolation chroot --format docker --layers, MODEL_ID=tiny"
built=$SECONDS
buildah bud --format docker --layers --pull="$pull" \
    --build-arg CUDA_IMAGE="$base" --build-arg MODEL_ID=tiny \
    -t "$image" . >"$work/build.log" 2>&1 || {
    tail -60 "$work/build.log"
    fail "buildah bud"
}
steps=$(grep -c '^STEP ' "$work/build.log" || true)
cached=$(grep -c -- '--> Using cache' "$work/build.log" || true)
say "built in $((SECONDS - built)) s: $steps steps, $cached of them from the cache"
grep -q "xFormers can't load" "$work/build.log" && fail "the build printed xFormers' load failure"

# -- inside the image --------------------------------------------------------------------------
container=$(buildah from --pull=never "$image")
mkdir -p "$work/out"
in_image() {
    buildah run --env RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true --env SMOKE_REPORT=/out/report.txt \
        --volume "$repo:/src:ro" --volume "$work/out:/out" "$container" -- "$@"
}
# a check inside the image (builder/smoke_image.py); its verdict comes back in a file
check() {
    in_image python /src/builder/smoke_image.py "$@" || return 1
    tail -1 "$work/out/report.txt" | sed 's/^/    /'
}

say "the torch and xformers pair"
in_image python -m xformers.info >"$work/out/xformers.txt" 2>&1 || {
    cat "$work/out/xformers.txt"
    fail "python -m xformers.info"
}
grep -E '^(xFormers |pytorch.version|build.info|build.torch_version|build.cuda_version)' \
    "$work/out/xformers.txt" | sed 's/^/    /'
check xformers || fail "the torch and xformers pair"

say "sdworker generate test_input.json (the reference image)"
in_image sdworker generate test_input.json -o /out/generated --quiet >"$work/generate.log" 2>&1 || {
    cat "$work/generate.log"
    fail "sdworker generate"
}
reference=$(cd "$work/out/generated" && ls -- *.png | head -1)
[ -n "$reference" ] || fail "sdworker generate wrote no image"

say "sdworker worker in RunPod's local mode (test_input.json)"
in_image sdworker worker >"$work/out/worker.log" 2>&1 || {
    cat "$work/out/worker.log"
    fail "sdworker worker"
}
check worker /out/worker.log "/out/generated/$reference" ||
    fail "sdworker worker's run"

say "sdworker serve, one /runsync job"
check serve /app/test_input.json "/out/generated/$reference" || fail "sdworker serve"

say "the unit tests against the image's torch ($(in_image python -c 'import torch; print(torch.__version__)'))"
# the test extra, less the browser and the wheel build; nothing the image has may change
mapfile -t test_deps < <(.venv/bin/python - <<'EOF'
import re, tomllib
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]
print("\n".join(r for r in extra if re.split(r"[\[=<>!~ ]", r)[0] not in ("playwright", "build")))
EOF
)
in_image sh -c "pip freeze | grep -v ' @ ' > /tmp/image-packages.txt" ||
    fail "pip freeze in the image"
in_image_pip() {
    buildah run --volume "$cache/pip:/root/.cache/pip" "$container" -- "$@"
}
in_image_pip pip install --quiet -c /tmp/image-packages.txt "${test_deps[@]}" >"$work/pip.log" 2>&1 || {
    tail -30 "$work/pip.log"
    fail "installing the test dependencies in the image"
}
tests_started=$SECONDS
# /src is mounted read-only: hypothesis keeps its example database under /tmp instead
in_image sh -c 'cd /src && HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis \
    python -m pytest tests/unit -q -p no:cacheprovider -x' \
    >"$work/out/tests.log" 2>&1 || {
    tail -60 "$work/out/tests.log"
    fail "the unit tests in the image"
}
say "unit tests: $(tail -1 "$work/out/tests.log" | tr -d '=') ($((SECONDS - tests_started)) s)"

# -- the size ----------------------------------------------------------------------------------
buildah inspect --type image "$image" >"$work/inspect.json"
buildah inspect --type image "$base" >"$work/base.json"
.venv/bin/python - "$work/inspect.json" "$work/base.json" "$base" <<'EOF' || fail "the image's config"
import json, sys

info, base = (json.load(open(path)) for path in sys.argv[1:3])
# Docker's format keeps the Dockerfile's SHELL (the OCI format drops it, and its pipefail)
shell = info["Docker"]["config"].get("Shell")
if shell != ["/bin/bash", "-o", "pipefail", "-c"]:
    raise SystemExit(f"image smoke: FAILED: the image's shell is {shell}, not bash with pipefail")
sizes = [layer["size"] for layer in json.loads(info["Manifest"])["layers"]]
ours = len(sizes) - len(json.loads(base["Manifest"])["layers"])
steps = [h.get("created_by", "") for h in info["Docker"]["history"] if not h.get("empty_layer")]
steps = ["(the base)"] * (len(sizes) - ours) + steps[len(steps) - ours :]
print(f"image smoke: the image is {sum(sizes) / 1e9:.2f} GB in {len(sizes)} layers, "
      f"{sum(sizes[-ours:]) / 1e9:.2f} GB of them over the base {sys.argv[3]}; the largest:")
for size, step in sorted(zip(sizes, steps), reverse=True)[:5]:
    step = " ".join(step.replace("/bin/sh -c ", "").split())
    print(f"    {size / 1e9:6.2f} GB  {step[:100]}")
EOF
say "passed"
