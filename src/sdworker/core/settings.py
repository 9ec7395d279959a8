"""One typed settings object (pydantic-settings), read from the environment once at start and
passed down.

Nothing in the package reads ``os.environ`` except :meth:`Settings.from_env`; every field is
listed, with its variable and default, in docs/settings.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from sdworker.core.aliases import parse_aliases
from sdworker.core.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
#: the environment variables settings come from (the bucket's follow RunPod's own names)
_ENV_PREFIXES = ("SDWORKER_", "BUCKET_")
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(value: str) -> bool:
    """Parse an environment flag; anything but a clear yes/no is an error (ValueError)."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def _tristate(value: str) -> bool | None:
    if value.strip().lower() in {"auto", ""}:
        return None
    return parse_bool(value)


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


class Settings(BaseSettings):
    """Every knob of the worker, the local endpoint and the builder.

    Built from keyword arguments (``Settings(models_dir=...)``, which reads no environment) or
    from the environment once at start (:meth:`from_env`). Immutable; :meth:`with_` copies.
    """

    model_config = SettingsConfigDict(
        env_prefix="SDWORKER_", frozen=True, extra="forbid", populate_by_name=True
    )

    # models
    models_dir: Path = Path("models")
    default_model: str | None = None
    #: other names for baked models: ``alias=baked_name,alias2=baked_name``
    model_aliases: str | None = None
    verify_sha256: bool = False
    # generation limits
    max_pixels: int = 1536 * 1536
    max_prompt_chars: int = 8192
    safety_checker: bool | None = None
    progress_interval_s: float = 1.0
    # input images and outbound URLs (sdworker.core.netguard)
    max_input_pixels: int = 64 * 1024 * 1024
    allow_private_urls: bool = False
    fetch_max_bytes: int = 50 * 1024 * 1024
    fetch_timeout_s: float = 30.0
    # device and memory
    device: str = "auto"
    dtype: str = "auto"
    model_memory_gb: float = 0.0
    #: load SD 3.x models without their T5 text encoder (about 9.5 GB in half precision)
    drop_t5: bool = False
    # local endpoint
    api_key: str | None = None
    endpoint_id: str = "local"
    state_dir: Path = Path(".sdworker")
    result_ttl_s: float = 1800.0
    runsync_ttl_s: float = 60.0
    execution_timeout_s: float = 600.0
    job_ttl_s: float = 86400.0
    runsync_wait_s: float = 90.0
    run_body_limit_bytes: int = 10 * 1024 * 1024
    runsync_body_limit_bytes: int = 20 * 1024 * 1024
    webhook_retries: int = 2
    webhook_interval_s: float = 10.0
    workers: int = 1
    #: a handler script for the local endpoint's workers; None runs the packaged one
    handler_path: Path | None = Field(
        None, validation_alias=AliasChoices("handler_path", "SDWORKER_HANDLER")
    )
    worker_poll_s: float = 10.0
    sweep_interval_s: float = 1.0
    job_attempts: int = 2
    # a worker holding a job that has not polled for this long is lost (0: never)
    worker_lost_s: float = 120.0
    #: a worker process that exits before it polls (it could not start) is started again
    #: after this long, doubled for each such failure in a row, at most worker_backoff_max_s
    worker_backoff_s: float = Field(0.5, gt=0)
    worker_backoff_max_s: float = Field(30.0, gt=0)
    # delivery
    payload_limit_bytes: int = 10_000_000
    #: a native job's answer: ours (RunPod's SD v1 endpoint's), or worker-sdxl's
    output_shape: Literal["native", "worker-sdxl"] = "native"
    bucket_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("bucket_endpoint_url", "BUCKET_ENDPOINT_URL")
    )
    bucket_access_key_id: str | None = Field(
        None, validation_alias=AliasChoices("bucket_access_key_id", "BUCKET_ACCESS_KEY_ID")
    )
    bucket_secret_access_key: str | None = Field(
        None, validation_alias=AliasChoices("bucket_secret_access_key", "BUCKET_SECRET_ACCESS_KEY")
    )
    bucket_name: str | None = Field(
        None, validation_alias=AliasChoices("bucket_name", "BUCKET_NAME")
    )
    bucket_region: str | None = Field(
        None, validation_alias=AliasChoices("bucket_region", "BUCKET_REGION")
    )
    url_expiry_s: int = 3600
    upload_attempts: int = 4
    upload_backoff_s: float = 0.5
    # dialects: how long a synchronous dialect call (A1111, DeepInfra) waits for its job
    dialect_wait_s: float = 600.0
    # LoRA: files kept in memory after use (all models), adapters kept on each loaded model
    lora_cache_files: int = 8
    lora_resident: int = 4
    # assets (sdworker.core.assets): the network volume, references by URL or hub id
    #: a RunPod network volume (worker-comfyui's ``models/<type>/`` layout); absent: none
    volume_dir: Path = Path("/runpod-volume")
    #: the largest LoRA a request may name by URL or hub id
    lora_max_bytes: int = Field(2 * 1024**3, gt=0)
    #: where downloaded assets are kept (None: ``state_dir/assets``), and how much of it
    asset_cache_dir: Path | None = None
    asset_cache_bytes: int = Field(20 * 1024**3, gt=0)
    #: the whole download of one asset, redirects included
    asset_timeout_s: float = Field(600.0, gt=0)
    #: the local Hugging Face hub cache hub ids resolve from first (None: RunPod's cached
    #: models, ``volume_dir/huggingface-cache/hub``)
    hub_cache_dir: Path | None = None
    #: whether hub ids not in the local cache are downloaded from ``hub_endpoint``
    hub_downloads: bool = True
    hub_endpoint: str = "https://huggingface.co"
    #: the operator's hub token, for hub ids a request gives no token of its own for
    hf_token: str | None = Field(None, repr=False)
    # performance (sdworker.gpu.optimize, sdworker.runpod.batcher); "auto"/None means "on with CUDA"
    batch_max: int = 0
    batch_window_ms: float = 30.0
    prefetch: int = Field(2, ge=0)
    preload: bool = True
    attention: str = "auto"
    channels_last: bool | None = None
    fuse_qkv: bool | None = None
    compile: bool = False
    compile_mode: str = "max-autotune-no-cudagraphs"
    compile_backend: str = "inductor"
    compile_sizes: str | None = None
    vae_slicing: bool | None = None
    vae_tiling: bool = False
    cudnn_benchmark: bool | None = None
    warmup: bool | None = None

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError("; ".join(_config_problem(err) for err in exc.errors())) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments only: the environment is read by :meth:`from_env`, once, at start."""
        return (init_settings,)

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: Any, info: ValidationInfo) -> Any:
        """Environment values are text: flags take yes/no words (``auto`` for tri-state ones)
        and an empty value means "not set" for optional ones."""
        if not isinstance(value, str) or info.field_name is None:
            return value
        kind = str(cls.model_fields[info.field_name].annotation)
        if kind.startswith("bool | None"):
            return _tristate(value)
        if kind.startswith("bool"):
            return parse_bool(value)
        if "None" in kind and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _usable(self) -> Settings:
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
        try:
            parse_aliases(self.model_aliases)
        except ValueError as exc:
            problems.append(f"SDWORKER_MODEL_ALIASES: {exc}")
        if self.compile_sizes is not None:
            try:
                parse_sizes(self.compile_sizes)
            except ValueError as exc:
                problems.append(f"SDWORKER_COMPILE_SIZES: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def asset_cache(self) -> Path:
        """Where downloaded assets are kept."""
        return self.asset_cache_dir or self.state_dir / "assets"

    def hub_cache(self) -> Path:
        """The local hub cache hub ids resolve from before any download."""
        return self.hub_cache_dir or self.volume_dir / "huggingface-cache" / "hub"

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
        # the source gives values by field name (every alias lists the name first)
        values = _MappingEnvSource(cls, os.environ if environ is None else environ)()
        return cls(**{**values, **overrides})

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (settings are immutable), validated again."""
        return type(self)(**{**self.model_dump(), **changes})

    @classmethod
    def documented(cls) -> list[tuple[str, str, Any]]:
        """(variable, field, default) for every setting, for docs/settings.md and ``--help``."""
        return [(env_name(name), name, f.default) for name, f in cls.model_fields.items()]


def env_name(name: str) -> str:
    """The environment variable of the setting ``name``."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"SDWORKER_{name.upper()}"


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (tests pass their own)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        mine = {k: v for k, v in self._environ.items() if k.startswith(_ENV_PREFIXES)}
        return parse_env_vars(mine, self.case_sensitive, self.env_ignore_empty, None)


def _config_problem(err: ErrorDetails) -> str:
    """One validation error as ``VARIABLE: what is wrong``."""
    message = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:
        return message
    name = str(err["loc"][0])
    variable = env_name(name) if name in Settings.model_fields else name
    return f"{variable}: {message} (got {err.get('input')!r})"
