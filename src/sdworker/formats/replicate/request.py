"""A prediction request, as Replicate's API and cog's HTTP server take it, read into one
native input and what answering needs (:class:`PredictionRequest`).

The body is the union of the two: Replicate's ``{"version", "input", "webhook",
"webhook_completed", "webhook_events_filter", "stream"}`` and cog's ``{"input", "id",
"created_at", "context", "webhook", "webhook_events_filter", "output_file_prefix"}``.

The model is named by the URL (``/v1/models/{owner}/{name}/predictions``), by ``version``, or
by neither (cog's routes: the default model). Each resolves as every format's model names do
(a baked name, an alias, a hub id); ``owner/name`` is tried whole, then as ``name``, and a
version id (``owner/name:VERSION``'s, which ``replicate.run`` sends alone) answers to an alias,
so ``SDWORKER_MODEL_ALIASES=5c7d5dc6...=sdxl`` serves a client's pinned version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from sdworker.core.aliases import unknown_model_message
from sdworker.core.errors import InvalidInput, ModelNotFound, Problem
from sdworker.core.netguard import UrlRefused, check_url
from sdworker.formats.base import Models
from sdworker.formats.replicate.inputs import (
    PREFIX,
    UNSUPPORTED,
    ReplicateInput,
    native_side,
    read_input,
)
from sdworker.formats.validation import FormatBody, LaxBool, Text, merge, refuse, validate

#: the webhook events, as Replicate names them
EVENTS = ("start", "output", "logs", "completed")
#: the longest prediction id a client may choose (cog's ``id``)
MAX_ID_CHARS = 128
#: a string input longer than this is elided from the ``input`` a prediction echoes
ECHO_CHARS = 1024


def _webhook(value: str) -> str:
    # the same rule as every webhook; the sender checks the address when it posts
    try:
        check_url(value)
    except UrlRefused as exc:
        raise refuse("url", str(exc)) from None
    return value


def _event(value: str) -> str:
    if value not in EVENTS:
        raise refuse("choice", f"must be one of {', '.join(EVENTS)}")
    return value


def _prediction_id(value: str) -> str:
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable() or "/" in value:
        raise refuse("id", f"must be 1-{MAX_ID_CHARS} printable characters, no '/'")
    return value


WebhookUrl = Annotated[Text, AfterValidator(_webhook)]
Event = Annotated[Text, AfterValidator(_event)]


class PredictionBody(FormatBody):
    """``POST /predictions`` (cog) and ``POST /v1/.../predictions`` (Replicate)."""

    input: ReplicateInput
    version: Text | None = None
    webhook: WebhookUrl | None = None
    webhook_completed: WebhookUrl | None = None
    webhook_events_filter: list[Event] | None = Field(default=None, max_length=len(EVENTS) * 4)
    stream: LaxBool | None = None
    id: Annotated[Text, AfterValidator(_prediction_id)] | None = None
    #: cog uploads outputs there: refused (outputs are served here, or uploaded to S3)
    output_file_prefix: Any = None
    inert = frozenset({"created_at", "context"})


@dataclass(frozen=True)
class PredictionRequest:
    """A prediction as it was asked for: what its answers show, and where its webhooks go."""

    #: ``owner/name`` as the client named the model (else the baked name)
    model: str
    version: str
    #: the input as given (long strings elided), echoed in every answer
    input: dict[str, Any]
    #: native field -> the client's name, for the job's own refusals
    names: dict[str, str] = field(default_factory=dict)
    webhook: str | None = None
    #: the events the webhook receives (Replicate's default: all of them)
    events: frozenset[str] = frozenset(EVENTS)
    #: receives the ``completed`` event only (Replicate's ``webhook_completed``)
    webhook_completed: str | None = None
    #: the id the client chose (cog's ``id``), shown instead of the job's
    client_id: str | None = None


@dataclass(frozen=True)
class ModelChoice:
    """The baked model a request names (None: the default), and how answers show it."""

    baked: str | None
    label: str
    version: str


def read_request(
    body: Any,
    models: Models,
    *,
    model: str | None = None,
    needs_version: bool = False,
    in_job: bool = False,
) -> tuple[dict[str, Any], PredictionRequest]:
    """The native input and the request of a prediction body; ``model`` is the URL's
    ``owner/name``; ``needs_version`` (``POST /v1/predictions``) requires ``version``;
    ``in_job`` (a RunPod job's input) refuses the webhooks, which the job's own replaces."""
    parsed, problems = validate(PredictionBody, body)
    problems = merge(problems, _unsupported(body, in_job))
    if parsed is not None and needs_version and not parsed.version:
        problems.append(Problem("version", "is required (a model or version)", has_value=False))
    choice = None
    if parsed is not None:
        try:
            choice = choose_model(models, model, parsed.version)
        except InvalidInput as exc:
            problems = merge(problems, exc.problems)
    if problems or parsed is None or choice is None:
        raise InvalidInput(problems)
    return _native(parsed, models, choice)


def _unsupported(body: Any, in_job: bool) -> list[Problem]:
    """The fields given that this server cannot honour, whatever else is wrong (their
    values are never shown: two are secrets)."""
    if not isinstance(body, Mapping):
        return []
    found = []
    if body.get("output_file_prefix") is not None:
        found.append(Problem("output_file_prefix", OUTPUT_FILE_PREFIX, has_value=False))
    for hook in ("webhook", "webhook_completed") if in_job else ():
        if body.get(hook) is not None:
            found.append(Problem(hook, IN_JOB_WEBHOOK, has_value=False))
    given = body.get("input")
    if isinstance(given, Mapping):
        for name, rule in UNSUPPORTED.items():
            if given.get(name) is not None:
                found.append(Problem(f"{PREFIX}{name}", rule, has_value=False))
    return found


#: why a prediction's webhook is refused inside a RunPod job
IN_JOB_WEBHOOK = "is not posted from inside a RunPod job: give the job its own webhook"
#: why cog's ``output_file_prefix`` is refused
OUTPUT_FILE_PREFIX = "is not supported here: outputs are URLs this endpoint serves (or S3's)"


def _native(
    parsed: PredictionBody, models: Models, choice: ModelChoice
) -> tuple[dict[str, Any], PredictionRequest]:
    manifest = models.manifest(choice.baked or models.default_model)
    side = native_side(manifest.native_width, manifest.native_height) if manifest else None
    read = read_input(parsed.input, side)
    if read.problems:
        raise InvalidInput(read.problems)
    native = dict(read.fields)
    if choice.baked is not None:
        native["model"] = choice.baked
    native["upload"] = models.uploads
    wanted = parsed.webhook_events_filter
    events = frozenset(EVENTS if wanted is None else wanted)
    request = PredictionRequest(
        model=choice.label,
        version=choice.version,
        input=echo(parsed.input.model_dump(exclude_none=True)),
        names={"model": "version" if parsed.version else "model", **read.names},
        webhook=parsed.webhook,
        events=events,
        webhook_completed=parsed.webhook_completed,
        client_id=parsed.id,
    )
    return native, request


def choose_model(models: Models, path: str | None, version: str | None) -> ModelChoice:
    """The model of ``path`` (the URL's ``owner/name``) or ``version``; neither: the default.

    A ``version`` that names no model is a bad field (422, ``version``); a path that names
    none is :class:`ModelNotFound` (404)."""
    if path:
        baked = _find(models, path, path.rpartition("/")[2])
        if baked is None:
            raise ModelNotFound(models.unknown_message(path))
        return ModelChoice(baked, path, version or _version_of(models, baked))
    if version:
        owner_name, _, pinned = version.rpartition(":") if ":" in version else ("", "", version)
        tries = [t for t in (pinned, owner_name, owner_name.rpartition("/")[2]) if t]
        if "/" in pinned:
            tries.append(pinned.rpartition("/")[2])
        baked = _find(models, *tries)
        if baked is None:
            message = unknown_model_message(version, _baked(models), named=False)
            raise InvalidInput.one("version", message, version)
        label = owner_name or (pinned if "/" in pinned else baked)
        return ModelChoice(baked, label, pinned)
    default = models.default_model or "default"
    return ModelChoice(None, default, _version_of(models, default))


def _find(models: Models, *refs: str) -> str | None:
    """The baked model the first of ``refs`` that names one names."""
    for ref in refs:
        try:
            return models.resolve(ref)
        except ModelNotFound:
            continue
    return None


def _baked(models: Models) -> list[str]:
    return [m.name for m in models.manifests or []]


def _version_of(models: Models, baked: str) -> str:
    """The version answers show for a baked model: its weights' sha256 (which names it too),
    else its name."""
    manifest = models.manifest(baked)
    return manifest.sha256 if manifest is not None and manifest.sha256 else baked


def echo(given: dict[str, Any]) -> dict[str, Any]:
    """The input as answers echo it: a long string (an image's base64) is elided."""
    return {
        key: _elided(value) if isinstance(value, str) and len(value) > ECHO_CHARS else value
        for key, value in given.items()
    }


def _elided(value: str) -> str:
    return f"<{len(value)} characters>"


__all__ = ["EVENTS", "PREFIX", "PredictionBody", "PredictionRequest", "read_request"]
