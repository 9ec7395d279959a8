"""The registry of baked models: which names exist, their manifests, the default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdworker.core.errors import ModelDamaged, ModelNotFound
from sdworker.core.manifest import MANIFEST_NAME, Manifest
from sdworker.core.settings import Settings


@dataclass(frozen=True)
class ModelInfo:
    """A baked model: its manifest and where its diffusers folder lies."""

    manifest: Manifest
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.name


class ModelRegistry:
    """Reads the manifests under ``settings.models_dir`` (once; call :meth:`refresh` to re-read)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._models: dict[str, ModelInfo] = {}
        self._default_override: str | None = None
        self.refresh()

    def refresh(self) -> None:
        root = self._settings.models_dir
        found: dict[str, ModelInfo] = {}
        if root.is_dir():
            for manifest_path in sorted(root.glob(f"*/{MANIFEST_NAME}")):
                if manifest_path.parent.name.startswith("."):
                    continue  # a bake in progress, or the previous copy it replaces
                try:
                    manifest = Manifest.read(manifest_path.parent)
                except (ValueError, TypeError, KeyError) as exc:
                    raise ModelDamaged(f"{manifest_path}: unreadable manifest: {exc}") from exc
                found[manifest.name] = ModelInfo(manifest, manifest_path.parent)
        self._models = found

    def names(self) -> list[str]:
        return sorted(self._models)

    def all(self) -> list[ModelInfo]:
        return [self._models[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def get(self, name: str | None = None) -> ModelInfo:
        """The model called ``name`` (the default when None)."""
        resolved = self.default_name if name is None else name
        if resolved not in self._models:
            raise ModelNotFound(self.unknown_message(resolved))
        return self._models[resolved]

    def unknown_message(self, name: str | None) -> str:
        names = ", ".join(self.names()) or "none (run `sdworker bake`)"
        return f"unknown model {name!r}; baked models: {names}"

    @property
    def default_name(self) -> str | None:
        """The configured default, else the only model, else the alphabetically first."""
        if self._default_override:
            return self._default_override
        if self._settings.default_model:
            return self._settings.default_model
        names = self.names()
        return names[0] if names else None

    def verify(self, *, check_sha256: bool | None = None) -> None:
        """Check every baked model's files against its manifest; the worker calls it at start.

        Raises :class:`ModelNotFound` when no model is baked or the configured default is not
        one of them, :class:`ModelDamaged` naming every model with a missing or changed file.
        Sizes are always checked; sha256 when ``check_sha256`` (default: the setting
        ``SDWORKER_VERIFY_SHA256``).
        """
        if not self._models:
            raise ModelNotFound(
                f"no baked models in {self._settings.models_dir} (run `sdworker bake MODEL_REF`)"
            )
        default = self._settings.default_model
        if default is not None and default not in self._models:
            raise ModelNotFound(f"SDWORKER_DEFAULT_MODEL: {self.unknown_message(default)}")
        deep = self._settings.verify_sha256 if check_sha256 is None else check_sha256
        damaged: list[str] = []
        for info in self.all():
            try:
                info.manifest.verify(info.path, check_sha256=deep)
            except ModelDamaged as exc:
                damaged.append(str(exc))
        if damaged:
            raise ModelDamaged(" | ".join(damaged))

    def set_default(self, name: str) -> None:
        """Switch the default model (A1111's ``sd_model_checkpoint`` option)."""
        self.get(name)
        self._default_override = name
