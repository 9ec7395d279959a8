# sdworker: a RunPod serverless worker for Stable Diffusion, with its model baked in.
#
#   docker build --build-arg MODEL_ID=stable-diffusion-v1-5/stable-diffusion-v1-5 -t sdworker .
#
# Layers go from the least to the most often changed: system, Python dependencies, the baked
# weights (only the builder's code is copied before them), then the worker's code. A code change
# therefore rebuilds the last, small layers and never re-bakes the weights.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies: torch from PyPI is the CUDA build; xformers comes with the "gpu" extra.
# The package itself is installed later; a stub (pyproject.toml and the __init__.py that holds
# the version) lets pip resolve its dependencies now (the image needs no docs: an empty README
# satisfies pyproject's readme field).
# DL3013: the versions are pinned in pyproject.toml.
COPY pyproject.toml ./
COPY src/sdworker/__init__.py src/sdworker/
# hadolint ignore=DL3013
RUN touch README.md \
    && pip install ".[gpu,s3]" \
    && pip uninstall -y sdworker \
    && rm -rf src build

# The bake: only the builder's code comes before it.
COPY src/sdworker/__init__.py src/sdworker/py.typed src/sdworker/
COPY src/sdworker/core/ src/sdworker/core/
COPY src/sdworker/builder/ src/sdworker/builder/
COPY builder/ builder/
ARG MODEL_ID=stable-diffusion-v1-5/stable-diffusion-v1-5
ARG MODEL_NAME=
ARG LORAS=
ARG MODEL_ALIASES=
ENV SDWORKER_MODELS_DIR=/models
RUN python builder/bake.py

# The worker's code, installed as a package: the image runs its entry point, `sdworker worker`.
COPY src/ src/
RUN pip install --no-deps . \
    && rm -rf build
COPY test_input.json ./

# At run time the worker never touches the network: everything it loads is baked.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    SDWORKER_DEFAULT_MODEL=${MODEL_NAME}

CMD ["sdworker", "worker"]
