"""The registry of baked models: which names exist, their manifests, their aliases, the default.

Aliases are resolved here and nowhere else: the registry hands out each manifest with every
alias it answers to (its baked ``--alias`` names and those ``SDWORKER_MODEL_ALIASES`` gives
it), so whatever reads manifests (the request formats' :func:`sdworker.formats.modelref.resolve`)
and whatever asks the registry by name (:meth:`ModelRegistry.get`, :meth:`ModelRegistry.resolve`)
honours them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdworker.core.aliases import parse_aliases, unknown_model_message
from sdworker.core.errors import ConfigError, ModelDamaged, ModelNotFound
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
        self._aliases: dict[str, str] = {}
        self._alias_problems: list[str] = []
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
        self._models, self._aliases, self._alias_problems = _with_aliases(
            found, parse_aliases(self._settings.model_aliases)
        )

    def resolve(self, name: str | None) -> str | None:
        """The baked model ``name`` names, by its own name or an alias (None: neither)."""
        if name is None:
            return None
        if name in self._models:
            return name
        return self._aliases.get(name)

    def named(self, job_input: Any) -> Any:
        """``job_input`` with an aliased ``model`` replaced by the baked name it stands for
        (anything else, unknown names included, is left for validation to judge)."""
        if isinstance(job_input, dict):
            model = job_input.get("model")
            resolved = self.resolve(model) if isinstance(model, str) else None
            if resolved is not None and resolved != model:
                return {**job_input, "model": resolved}
        return job_input

    def aliases(self) -> dict[str, str]:
        """Every alias that resolves, and the baked model it names."""
        return dict(self._aliases)

    def check_aliases(self) -> None:
        """Raise :class:`ConfigError` when an alias names no baked model or clashes with
        another name; the worker and the endpoint refuse to start on it."""
        if self._alias_problems:
            raise ConfigError("; ".join(self._alias_problems))

    def names(self) -> list[str]:
        return sorted(self._models)

    def all(self) -> list[ModelInfo]:
        return [self._models[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def get(self, name: str | None = None) -> ModelInfo:
        """The model called ``name`` (the default when None)."""
        given = self.default_name if name is None else name
        resolved = self.resolve(given)
        if resolved is None:
            raise ModelNotFound(self.unknown_message(given))
        return self._models[resolved]

    def unknown_message(self, name: str | None) -> str:
        """Names the baked models and says how to add an alias."""
        return unknown_model_message(name, self.names())

    @property
    def default_name(self) -> str | None:
        """The configured default, else the only model, else the alphabetically first."""
        if self._default_override:
            return self._default_override
        if self._settings.default_model:
            return self.resolve(self._settings.default_model) or self._settings.default_model
        names = self.names()
        return names[0] if names else None

    def verify(self, *, check_sha256: bool | None = None) -> None:
        """Check every baked model's files against its manifest; the worker calls it at start.

        Raises :class:`ModelNotFound` when no model is baked or the configured default is not
        one of them, :class:`ConfigError` for an alias that names no baked model,
        :class:`ModelDamaged` naming every model with a missing or changed file.
        Sizes are always checked; sha256 when ``check_sha256`` (default: the setting
        ``SDWORKER_VERIFY_SHA256``).
        """
        if not self._models:
            raise ModelNotFound(
                f"no baked models in {self._settings.models_dir} (run `sdworker bake MODEL_REF`)"
            )
        self.check_aliases()
        default = self._settings.default_model
        if default is not None and self.resolve(default) is None:
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
        self._default_override = self.get(name).name


def _with_aliases(
    found: dict[str, ModelInfo], configured: dict[str, str]
) -> tuple[dict[str, ModelInfo], dict[str, str], list[str]]:
    """The models with every alias on their manifests, alias → name, and what is wrong.

    A baked ``--alias`` is kept unless the setting gives the same alias to another model (the
    operator's setting wins); an alias that is another model's name, or that two baked models
    both claim, resolves to neither and is a problem."""
    names = sorted(found)
    problems: list[str] = []
    owners: dict[str, set[str]] = {}
    for name, info in found.items():
        for alias in info.manifest.aliases:
            owners.setdefault(alias, set()).add(name)
    for alias, target in configured.items():
        if target not in found:
            problems.append(
                f"SDWORKER_MODEL_ALIASES: alias {alias!r} names {target!r}, which is not a baked "
                f"model (baked: {', '.join(names) or 'none'})"
            )
            owners.pop(alias, None)
        else:
            owners[alias] = {target}
    aliases: dict[str, str] = {}
    for alias, claimed in sorted(owners.items()):
        if alias in found and claimed != {alias}:
            problems.append(
                f"alias {alias!r} of {sorted(claimed)[0]!r} is another baked model's name"
            )
        elif len(claimed) > 1:
            problems.append(
                f"alias {alias!r} is baked into two models: {', '.join(sorted(claimed))}"
            )
        elif alias not in found:
            aliases[alias] = next(iter(claimed))
    models = {
        name: replace(
            info,
            manifest=replace(
                info.manifest,
                aliases=tuple(sorted(a for a, target in aliases.items() if target == name)),
            ),
        )
        for name, info in found.items()
    }
    return models, aliases, problems
