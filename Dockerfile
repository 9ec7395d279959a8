# sdworker: a RunPod serverless worker for Stable Diffusion, with its model baked in.
#
#   docker build --build-arg MODEL_ID=stable-diffusion-v1-5/stable-diffusion-v1-5 -t sdworker .
#   docker build --build-arg MODEL_ID=black-forest-labs/FLUX.1-schnell -t sdworker-flux .
#   docker build --build-arg MODEL_ID=stabilityai/stable-diffusion-3.5-medium \
#       --secret id=HF_TOKEN,env=HF_TOKEN -t sdworker-sd35 .
#
# MODEL_ID is any model sdworker bakes: SD 1.x, 2.x, XL, SD 3.x, FLUX.1 (schnell, dev, Fill,
# Kontext). Gated hub models (FLUX.1 dev, SD 3.5) need a Hugging Face token: give it as the
# build secret HF_TOKEN (never a build argument, which the image's history would keep).
#
# Layers go from the least to the most often changed: system, Python dependencies, the baked
# weights (only the builder's code is copied before them), then the worker's code. A code change
# therefore rebuilds the last, small layers and never re-bakes the weights. docs/image.md has the
# build arguments, the deployment to RunPod and the sizes.
#
# The base brings Ubuntu and the NVIDIA container toolkit's hooks (the driver, and the CUDA
# version the host must have) but no CUDA libraries: torch's wheels carry their own (cuBLAS,
# cuDNN, NCCL...), and a runtime or cudnn base would hold a second copy of them.
ARG CUDA_IMAGE=docker.io/nvidia/cuda:12.8.1-base-ubuntu22.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies: the "gpu" extra pins the CUDA torch its xformers wheel was built for (the pair
# xformers' kernels need), "s3" adds uploads. The package itself is installed later; a stub
# (pyproject.toml and the __init__.py that holds the version) lets pip resolve its dependencies
# now (the image needs no docs: an empty README satisfies pyproject's readme field). pip's
# downloads stay in a cache mount, outside the image; static libraries (only a linker reads
# them) are dropped in the same layer.
# DL3013: the versions are pinned in pyproject.toml.
COPY pyproject.toml ./
COPY src/sdworker/__init__.py src/sdworker/
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    touch README.md \
    && pip install ".[gpu,s3]" \
    && pip uninstall -y sdworker \
    && find /opt/venv -name '*.a' -type f -delete \
    && rm -rf src build README.md

# The bake: only the builder's code (and the LoRA and embedding files to bake) comes before it. It runs
# from the source tree, as `sdworker bake --from-env` does once the package is installed.
COPY src/sdworker/__init__.py src/sdworker/py.typed src/sdworker/
COPY src/sdworker/families/ src/sdworker/families/
COPY src/sdworker/core/ src/sdworker/core/
COPY src/sdworker/families/ src/sdworker/families/
COPY src/sdworker/builder/ src/sdworker/builder/
COPY src/sdworker/families/ src/sdworker/families/
COPY loras/ loras/
COPY embeddings/ embeddings/
ARG MODEL_ID=stable-diffusion-v1-5/stable-diffusion-v1-5
ARG MODEL_NAME=
ARG LORAS=
ARG EMBEDDINGS=
ARG MODEL_ALIASES=
ENV SDWORKER_MODELS_DIR=/models
# the token of a gated hub model, read from the optional build secret HF_TOKEN (a file only
# this step sees: nothing of it is left in a layer)
RUN --mount=type=secret,id=HF_TOKEN,required=false \
    HF_TOKEN_PATH=/run/secrets/HF_TOKEN PYTHONPATH=src python -m sdworker.builder --from-env

# The worker's code, installed as a package: the image runs its entry point, `sdworker worker`.
COPY src/ src/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build
COPY test_input.json ./

# At run time the worker never touches the network: everything it loads is baked.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    SDWORKER_DEFAULT_MODEL=${MODEL_NAME}

CMD ["sdworker", "worker"]
