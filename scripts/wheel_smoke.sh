#!/usr/bin/env bash
# The package as a user installs it: build the wheel (and the sdist), install the wheel into a new
# virtual environment outside the repository, then, from an empty folder, bake the tiny model,
# generate one job, and serve the local endpoint for a health check and one /runsync job.
#
# torch is installed first and pinned, as in scripts/setup.sh: resolving the wheel then keeps that
# build instead of fetching another one. Needs .venv (make setup) for `build`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
started=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/sdworker-wheel.XXXXXX")
server=
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill "$server"
        wait "$server" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

say() { echo "wheel smoke ($((SECONDS - started)) s): $*"; }
fail() {
    echo "wheel smoke: FAILED: $*" >&2
    exit 1
}

say "building the wheel and the sdist"
.venv/bin/python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || {
    cat "$work/build.log"
    fail "python -m build"
}
wheel=$(echo "$work"/dist/sdworker-*-py3-none-any.whl)
[ -f "$wheel" ] || fail "no wheel in $work/dist"
[ -f "$(echo "$work"/dist/sdworker-*.tar.gz)" ] || fail "no sdist in $work/dist"
version=$(basename "$wheel" | cut -d- -f2)
"$python" - "$wheel" <<'EOF' || fail "the wheel lacks the builder's model configs"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for family in ("sd1", "sd2", "sdxl"):
    assert f"sdworker/builder/configs/{family}/model_index.json" in names, family
EOF

say "installing $(basename "$wheel") into a new virtual environment"
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --disable-pip-version-check)
{ "${pip[@]}" "torch==2.13.0" && "${pip[@]}" "$wheel"; } >"$work/pip.log" 2>&1 || {
    tail -40 "$work/pip.log"
    fail "pip install"
}
grep -i -E "^Collecting (torch([=<>!~ ]|$)|torchvision|nvidia-)" "$work/pip.log" |
    grep -v "^Collecting torch==2.13.0$" &&
    fail "the wheel's dependencies asked for another torch, torchvision or CUDA packages"
"$work/venv/bin/python" -m pip check >/dev/null || fail "pip check: $("$work/venv/bin/python" -m pip check)"
bin=$work/venv/bin

# an empty folder, no repository on the path, nothing inherited that points elsewhere
mkdir "$work/run"
cd "$work/run"
unset PYTHONPATH SDWORKER_HANDLER SDWORKER_CLIP_BPE SDWORKER_API_KEY
export SDWORKER_MODELS_DIR=models SDWORKER_STATE_DIR=state
export RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true HF_HUB_OFFLINE=1
location=$("$bin/python" -c 'import sdworker; print(sdworker.__file__)')
case $location in "$repo"/*) fail "sdworker imported from the repository ($location)" ;; esac
[ "$("$bin/sdworker" --version)" = "$version" ] || fail "sdworker --version is not $version"

say "sdworker bake tiny"
"$bin/sdworker" bake tiny >bake.log 2>&1 || {
    cat bake.log
    fail "sdworker bake tiny"
}

say "sdworker generate"
echo '{"input": {"prompt": "a lighthouse", "seed": 7, "num_inference_steps": 2}}' >job.json
"$bin/sdworker" generate job.json -o out --quiet >generate.log 2>&1 || {
    cat generate.log
    fail "sdworker generate"
}
[ -s out/0-7.png ] || fail "sdworker generate wrote no out/0-7.png"

say "sdworker serve"
"$bin/sdworker" serve --port 0 --workers 1 >serve.log 2>&1 &
server=$!
"$bin/python" - <<'EOF' || {
import base64, json, re, time, urllib.request
from pathlib import Path

deadline = time.monotonic() + 60
while not (found := re.search(r"on (http://127\.0\.0\.1:\d+)/v2/local", Path("serve.log").read_text())):
    if time.monotonic() > deadline:
        raise SystemExit("the endpoint did not start")
    time.sleep(0.2)
url = found.group(1) + "/v2/local"

def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=200) as response:
        return json.load(response)

while True:  # the port is bound before the print; it answers once uvicorn is up
    try:
        health = call("/health")
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
assert "jobs" in health and "workers" in health, health
job = {"input": {"prompt": "a lighthouse", "seed": 7, "num_inference_steps": 2}}
done = call("/runsync?wait=180000", job)
assert done["status"] == "COMPLETED", done
image = base64.b64decode(done["output"][0]["image"])
assert image.startswith(b"\x89PNG") and done["output"][0]["seed"] == 7, done["output"]
assert image == Path("out/0-7.png").read_bytes(), "the endpoint's image differs from generate's"
print(f"health {health['workers']}; /runsync {done['status']} in {done['executionTime']} ms")
EOF
    cat serve.log
    fail "sdworker serve"
}
kill "$server"
wait "$server" || true
server=
say "passed"
