"""The one error hierarchy. Each class carries a machine ``code``; the handler alone turns
these into a job's ``error``, the server alone into HTTP statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SdworkerError(Exception):
    """Base of every error sdworker raises on purpose."""

    code = "internal_error"
    #: the GPU (or process) may be unusable afterwards: ask RunPod for a fresh worker
    refresh_worker = False


class ConfigError(SdworkerError):
    """A setting (environment variable) has a value that cannot be used."""

    code = "config_error"


@dataclass(frozen=True)
class Problem:
    """One bad field of an input: where, which rule, what was received."""

    field: str
    message: str
    value: Any = None
    has_value: bool = True

    def __str__(self) -> str:
        if not self.has_value:
            return f"{self.field}: {self.message}"
        return f"{self.field}: {self.message} (got {self.shown_value})"

    @property
    def shown_value(self) -> str:
        """The value as messages show it: short, and text JSON can always carry (a NaN, an
        infinity or a lone surrogate the client sent is shown escaped, never passed on)."""
        return _short(self.value).encode("utf-8", "backslashreplace").decode("utf-8")

    def as_dict(self) -> dict[str, str]:
        """``{"field", "rule", "value"}`` as a job's failure carries it."""
        data = {"field": self.field, "rule": self.message}
        if self.has_value:
            data["value"] = self.shown_value
        return data


class Shown(str):
    """A value as messages already show it (a job's failure carries its problems' values so:
    ``"20"`` for 20): writing it again must not quote it twice."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InvalidInput(SdworkerError):
    """The job's ``input`` broke one or more rules; every problem is listed in one string."""

    code = "invalid_input"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid input: " + "; ".join(str(p) for p in problems))

    @classmethod
    def one(
        cls, field: str, message: str, value: Any = None, *, has_value: bool = True
    ) -> InvalidInput:
        return cls([Problem(field, message, value, has_value)])

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


class ModelNotFound(SdworkerError):
    """A model name that is not baked into this worker."""

    code = "model_not_found"


class ModelDamaged(SdworkerError):
    """A baked model whose files are missing or do not match the manifest."""

    code = "model_damaged"


class ImageFetchError(InvalidInput):
    """An input image URL was refused or could not be fetched: the client's fault, on its field."""

    code = "image_fetch_error"


class LoraError(SdworkerError):
    """A LoRA that is missing or does not fit the model."""

    code = "lora_error"


class Cancelled(SdworkerError):
    """The job was cancelled while it ran; raised between denoising steps."""

    code = "cancelled"


class OutOfMemory(SdworkerError):
    """The device ran out of memory and a retry with the cache emptied did not help."""

    code = "out_of_memory"
    refresh_worker = True


class DeviceError(SdworkerError):
    """A fault (CUDA error) that leaves the device unusable."""

    code = "device_error"
    refresh_worker = True


class PayloadTooLarge(SdworkerError):
    """The result would exceed the payload limit and no bucket is configured."""

    code = "payload_too_large"


class UploadFailed(SdworkerError):
    """Uploading the images to S3 failed after every retry."""

    code = "upload_failed"


class JobStateConflict(SdworkerError):
    """A request that the job's current status does not allow (e.g. retry of a running job)."""

    code = "job_state_conflict"


class UploadRejected(UploadFailed):
    """S3 refused an upload for a reason a retry cannot fix (no such bucket, access denied)."""


class BuildError(SdworkerError):
    """A model could not be baked: a bad reference, a missing file, a failed conversion."""

    code = "build_error"
