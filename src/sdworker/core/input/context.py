"""What the input rules know besides the input: the models, the LoRAs, the limits; and
the :class:`Draft` every rule reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sdworker.core.manifest import Manifest
from sdworker.core.schema import GenerateInput, Mode
from sdworker.families import Family
from sdworker.families import get as family_of


@dataclass(frozen=True)
class ModelFacts:
    """What validation knows about a baked model (no weights)."""

    name: str
    native_width: int
    native_height: int
    family: Family
    has_refiner: bool = False
    has_safety_checker: bool = False
    #: defaults the model carries (baked with it), over its family's
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest) -> ModelFacts:
        """The facts of a baked model, from its manifest."""
        return cls(
            manifest.name,
            manifest.native_width,
            manifest.native_height,
            family_of(manifest.family),
            manifest.has_refiner,
            manifest.has_safety_checker,
            dict(manifest.defaults),
        )

    def default_values(self) -> dict[str, Any]:
        """Native field -> the value a request that leaves it out gets on this model."""
        return {**self.family.defaults.fields(), **self.defaults}


class LoraCatalog(Protocol):
    """The LoRAs a request may name, as validation sees them (the asset registry's, baked and
    on the volume: :class:`~sdworker.core.assets.AssetCatalog`)."""

    def names(self) -> list[str]:
        """Every usable LoRA's name."""
        ...

    def knows(self, name: str) -> bool:
        """Whether ``name`` names a usable LoRA."""
        ...

    def family(self, name: str) -> str | None:
        """The family the LoRA ``name`` was made for (None: unknown)."""
        ...

    def refusal(self, name: str) -> str | None:
        """Why the LoRA file ``name`` names cannot be used (None: it can, or there is none)."""
        ...


@dataclass(frozen=True)
class NamedLoras:
    """LoRAs known by name only (their families unknown): a catalog for tests and tools."""

    known: Sequence[str] = ()

    def names(self) -> list[str]:
        return sorted(self.known)

    def knows(self, name: str) -> bool:
        return name in self.known

    def family(self, name: str) -> str | None:
        return None

    def refusal(self, name: str) -> str | None:
        return None


@dataclass(frozen=True)
class Limits:
    """The deployment's bounds on one request."""

    #: the largest width x height (``SDWORKER_MAX_PIXELS``)
    max_pixels: int
    #: the longest prompt or negative prompt: weighted prompts are encoded in 77-token
    #: chunks, and a prompt of tens of kilobytes would hold the GPU for minutes
    max_prompt_chars: int = 8192


@dataclass(frozen=True)
class InputContext:
    """Everything validation is given besides the input."""

    models: Mapping[str, ModelFacts]
    default_model: str | None
    limits: Limits
    loras: LoraCatalog = NamedLoras()

    @classmethod
    def of(
        cls,
        models: Mapping[str, ModelFacts],
        *,
        default_model: str | None,
        max_pixels: int,
        loras: Sequence[str] | LoraCatalog = (),
        max_prompt_chars: int = 8192,
    ) -> InputContext:
        """A context from plain values (LoRAs by name alone, their families unknown)."""
        catalog = NamedLoras(tuple(loras)) if isinstance(loras, Sequence) else loras
        return cls(models, default_model, Limits(max_pixels, max_prompt_chars), catalog)


@dataclass(frozen=True)
class Draft:
    """What every rule reads: the input as far as it validated (its bad fields left at their
    defaults, the model's defaults filled in), the model it names, and the context."""

    input: GenerateInput
    #: the native fields the client gave that validated
    given: frozenset[str]
    #: the model the input names (or the default); None when there is none or it is unknown
    model: ModelFacts | None
    context: InputContext
    #: native field -> how the client spelled it, for fields not spelled natively
    spelled: Mapping[str, str] = field(default_factory=dict)

    def name(self, native: str) -> str:
        """``native`` as the client spelled it."""
        return self.spelled.get(native, native)

    @property
    def has_image(self) -> bool:
        image = self.input.image
        return isinstance(image, str) and bool(image.strip())

    @property
    def family(self) -> Family | None:
        return self.model.family if self.model else None

    @property
    def mode(self) -> Mode:
        """What the request asks for, as its model's family reads it."""
        if self.input.upscale is not None:
            return "upscale"
        has_mask = self.input.mask_image is not None
        if self.family is not None:
            return self.family.mode_for(self.has_image, has_mask)
        return "inpaint" if has_mask else "img2img" if self.has_image else "txt2img"
