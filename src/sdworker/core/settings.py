"""One typed settings object, read from the environment once at start and passed down.

Nothing in the package reads ``os.environ`` except :meth:`Settings.from_env`; every field is
listed, with its variable and default, in the README.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sdworker.core.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(value: str, name: str) -> bool:
    """Parse an environment flag; anything but a clear yes/no is a configuration error."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false (got {value!r})")


def _tristate(value: str, name: str) -> bool | None:
    if value.strip().lower() in {"auto", ""}:
        return None
    return parse_bool(value, name)


#: SigV4 presigned URLs cannot live longer than seven days
MAX_URL_EXPIRY_S = 7 * 24 * 3600
#: accepted ``SDWORKER_DTYPE`` values
DTYPES = ("auto", "fp16", "float16", "bf16", "bfloat16", "fp32", "float32")
#: accepted ``SDWORKER_ATTENTION`` values
ATTENTION = ("auto", "sdpa", "xformers", "classic")
#: the widths and heights an image may have: multiples of SIDE_STEP from MIN_SIDE to MAX_SIDE
MIN_SIDE, MAX_SIDE, SIDE_STEP = 64, 2048, 8


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"512x512, 768x512"`` -> ``[(512, 512), (768, 512)]``; each side one a request may ask
    for (:data:`MIN_SIDE`...); ValueError naming the bad entry otherwise."""
    sizes = []
    for entry in (part.strip() for part in text.split(",")):
        width, sep, height = entry.lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise ValueError(f"expected WIDTHxHEIGHT[,WIDTHxHEIGHT...] (got {entry!r})")
        size = (int(width), int(height))
        if any(not MIN_SIDE <= side <= MAX_SIDE or side % SIDE_STEP for side in size):
            raise ValueError(
                f"sides must be multiples of {SIDE_STEP} from {MIN_SIDE} to {MAX_SIDE} "
                f"(got {entry!r})"
            )
        sizes.append(size)
    return sizes


@dataclass(frozen=True)
class Settings:
    """Every knob of the worker, the local endpoint and the builder."""

    # models
    models_dir: Path = field(default=Path("models"), metadata={"env": "SDWORKER_MODELS_DIR"})
    default_model: str | None = field(default=None, metadata={"env": "SDWORKER_DEFAULT_MODEL"})
    verify_sha256: bool = field(default=False, metadata={"env": "SDWORKER_VERIFY_SHA256"})
    # generation limits
    max_pixels: int = field(default=1536 * 1536, metadata={"env": "SDWORKER_MAX_PIXELS"})
    safety_checker: bool | None = field(default=None, metadata={"env": "SDWORKER_SAFETY_CHECKER"})
    progress_interval_s: float = field(
        default=1.0, metadata={"env": "SDWORKER_PROGRESS_INTERVAL_S"}
    )
    # input images and outbound URLs (sdworker.core.netguard)
    max_input_pixels: int = field(
        default=64 * 1024 * 1024, metadata={"env": "SDWORKER_MAX_INPUT_PIXELS"}
    )
    allow_private_urls: bool = field(default=False, metadata={"env": "SDWORKER_ALLOW_PRIVATE_URLS"})
    fetch_max_bytes: int = field(
        default=50 * 1024 * 1024, metadata={"env": "SDWORKER_FETCH_MAX_BYTES"}
    )
    fetch_timeout_s: float = field(default=30.0, metadata={"env": "SDWORKER_FETCH_TIMEOUT_S"})
    # device and memory
    device: str = field(default="auto", metadata={"env": "SDWORKER_DEVICE"})
    dtype: str = field(default="auto", metadata={"env": "SDWORKER_DTYPE"})
    model_memory_gb: float = field(default=0.0, metadata={"env": "SDWORKER_MODEL_MEMORY_GB"})
    # local endpoint
    api_key: str | None = field(default=None, metadata={"env": "SDWORKER_API_KEY"})
    endpoint_id: str = field(default="local", metadata={"env": "SDWORKER_ENDPOINT_ID"})
    state_dir: Path = field(default=Path(".sdworker"), metadata={"env": "SDWORKER_STATE_DIR"})
    result_ttl_s: float = field(default=1800.0, metadata={"env": "SDWORKER_RESULT_TTL_S"})
    runsync_ttl_s: float = field(default=60.0, metadata={"env": "SDWORKER_RUNSYNC_TTL_S"})
    execution_timeout_s: float = field(
        default=600.0, metadata={"env": "SDWORKER_EXECUTION_TIMEOUT_S"}
    )
    job_ttl_s: float = field(default=86400.0, metadata={"env": "SDWORKER_JOB_TTL_S"})
    runsync_wait_s: float = field(default=90.0, metadata={"env": "SDWORKER_RUNSYNC_WAIT_S"})
    run_body_limit_bytes: int = field(
        default=10 * 1024 * 1024, metadata={"env": "SDWORKER_RUN_BODY_LIMIT_BYTES"}
    )
    runsync_body_limit_bytes: int = field(
        default=20 * 1024 * 1024, metadata={"env": "SDWORKER_RUNSYNC_BODY_LIMIT_BYTES"}
    )
    webhook_retries: int = field(default=2, metadata={"env": "SDWORKER_WEBHOOK_RETRIES"})
    webhook_interval_s: float = field(default=10.0, metadata={"env": "SDWORKER_WEBHOOK_INTERVAL_S"})
    workers: int = field(default=1, metadata={"env": "SDWORKER_WORKERS"})
    handler_path: Path = field(default=Path("handler.py"), metadata={"env": "SDWORKER_HANDLER"})
    worker_poll_s: float = field(default=10.0, metadata={"env": "SDWORKER_WORKER_POLL_S"})
    sweep_interval_s: float = field(default=1.0, metadata={"env": "SDWORKER_SWEEP_INTERVAL_S"})
    job_attempts: int = field(default=2, metadata={"env": "SDWORKER_JOB_ATTEMPTS"})
    # a worker holding a job that has not polled for this long is lost (0: never)
    worker_lost_s: float = field(default=120.0, metadata={"env": "SDWORKER_WORKER_LOST_S"})
    # delivery
    payload_limit_bytes: int = field(
        default=10_000_000, metadata={"env": "SDWORKER_PAYLOAD_LIMIT_BYTES"}
    )
    bucket_endpoint_url: str | None = field(default=None, metadata={"env": "BUCKET_ENDPOINT_URL"})
    bucket_access_key_id: str | None = field(default=None, metadata={"env": "BUCKET_ACCESS_KEY_ID"})
    bucket_secret_access_key: str | None = field(
        default=None, metadata={"env": "BUCKET_SECRET_ACCESS_KEY"}
    )
    bucket_name: str | None = field(default=None, metadata={"env": "BUCKET_NAME"})
    bucket_region: str | None = field(default=None, metadata={"env": "BUCKET_REGION"})
    url_expiry_s: int = field(default=3600, metadata={"env": "SDWORKER_URL_EXPIRY_S"})
    upload_attempts: int = field(default=4, metadata={"env": "SDWORKER_UPLOAD_ATTEMPTS"})
    upload_backoff_s: float = field(default=0.5, metadata={"env": "SDWORKER_UPLOAD_BACKOFF_S"})
    # dialects: how long a synchronous dialect call (A1111, DeepInfra) waits for its job
    dialect_wait_s: float = field(default=600.0, metadata={"env": "SDWORKER_DIALECT_WAIT_S"})
    # LoRA: files kept in memory after use (all models), adapters kept on each loaded model
    lora_cache_files: int = field(default=8, metadata={"env": "SDWORKER_LORA_CACHE_FILES"})
    lora_resident: int = field(default=4, metadata={"env": "SDWORKER_LORA_RESIDENT"})
    # performance (sdworker.gpu.optimize, sdworker.runpod.batcher); "auto"/None means "on with CUDA"
    batch_max: int = field(default=0, metadata={"env": "SDWORKER_BATCH_MAX"})
    batch_window_ms: float = field(default=30.0, metadata={"env": "SDWORKER_BATCH_WINDOW_MS"})
    preload: bool = field(default=True, metadata={"env": "SDWORKER_PRELOAD"})
    attention: str = field(default="auto", metadata={"env": "SDWORKER_ATTENTION"})
    channels_last: bool | None = field(default=None, metadata={"env": "SDWORKER_CHANNELS_LAST"})
    fuse_qkv: bool | None = field(default=None, metadata={"env": "SDWORKER_FUSE_QKV"})
    compile: bool = field(default=False, metadata={"env": "SDWORKER_COMPILE"})
    compile_mode: str = field(
        default="max-autotune-no-cudagraphs", metadata={"env": "SDWORKER_COMPILE_MODE"}
    )
    compile_backend: str = field(default="inductor", metadata={"env": "SDWORKER_COMPILE_BACKEND"})
    compile_sizes: str | None = field(default=None, metadata={"env": "SDWORKER_COMPILE_SIZES"})
    vae_slicing: bool | None = field(default=None, metadata={"env": "SDWORKER_VAE_SLICING"})
    vae_tiling: bool = field(default=False, metadata={"env": "SDWORKER_VAE_TILING"})
    cudnn_benchmark: bool | None = field(default=None, metadata={"env": "SDWORKER_CUDNN_BENCHMARK"})
    warmup: bool | None = field(default=None, metadata={"env": "SDWORKER_WARMUP"})

    def __post_init__(self) -> None:
        """Values a worker could not use fail at start, not in every job."""
        problems = []
        if self.dtype not in DTYPES:
            problems.append(
                f"SDWORKER_DTYPE: expected one of {', '.join(DTYPES)} (got {self.dtype!r})"
            )
        if self.attention not in ATTENTION:
            problems.append(
                f"SDWORKER_ATTENTION: expected one of {', '.join(ATTENTION)} (got {self.attention!r})"
            )
        if not 1 <= self.url_expiry_s <= MAX_URL_EXPIRY_S:
            problems.append(
                f"SDWORKER_URL_EXPIRY_S: must be 1 to {MAX_URL_EXPIRY_S} seconds, the longest a "
                f"presigned URL can live (got {self.url_expiry_s})"
            )
        if self.max_pixels < MIN_SIDE * MIN_SIDE:
            problems.append(
                f"SDWORKER_MAX_PIXELS: must be at least {MIN_SIDE * MIN_SIDE} "
                f"(got {self.max_pixels})"
            )
        if self.compile_sizes is not None:
            try:
                parse_sizes(self.compile_sizes)
            except ValueError as exc:
                problems.append(f"SDWORKER_COMPILE_SIZES: {exc}")
        if problems:
            raise ConfigError("; ".join(problems))

    def batch_images(self) -> int:
        """Images per batched pipeline call: ``SDWORKER_BATCH_MAX``; ``0`` (auto) is 1, batching
        off, on every device. Off by default because a batched image can differ from its
        single-run twin in the last bits, and the seed promise of the contract is bit-for-bit."""
        return self.batch_max if self.batch_max > 0 else 1

    def warmup_sizes(self, native: tuple[int, int]) -> list[tuple[int, int]]:
        """(width, height) pairs the start-up warm-up compiles for: ``SDWORKER_COMPILE_SIZES``,
        or the model's native size."""
        return parse_sizes(self.compile_sizes) if self.compile_sizes else [native]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (``os.environ`` by default); ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name not in env:
                continue
            raw = env[name]
            values[f.name] = _convert(raw, f.type, name)
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (settings are immutable)."""
        return replace(self, **changes)

    @classmethod
    def documented(cls) -> list[tuple[str, str, Any]]:
        """(variable, field, default) for every setting, for the README and ``--help``."""
        return [(f.metadata["env"], f.name, f.default) for f in fields(cls)]


def _convert(raw: str, annotation: Any, name: str) -> Any:
    kind = str(annotation)
    try:
        if kind.startswith("bool | None"):
            return _tristate(raw, name)
        if kind.startswith("bool"):
            return parse_bool(raw, name)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("Path"):
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: expected {kind.split()[0]} (got {raw!r})") from exc
    return raw or None if "None" in kind else raw
