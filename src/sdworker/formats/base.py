"""What every request format shares: the :class:`Format` contract, the :class:`FormatContext`
its routes read, and how a :class:`~sdworker.core.jobs.Failure` becomes an HTTP status.

A format is one object that knows a service's request and answer shapes. It writes three
hooks, as a LitServe API writes ``decode_request`` and ``encode_response``:

* ``decode(body, models, **where)`` → :class:`Decoded` (the native inputs, and the format's
  own reading of the request, which encoding needs) or a raised
  :class:`~sdworker.core.errors.SdworkerError` whose problems carry the format's field names;
* ``encode(decoded, outputs, execution_ms)`` → the format's answer for finished jobs;
* ``encode_error(failure)`` → ``(HTTP status, the format's error body)``;

and says how its calls are answered (:attr:`Format.answers`: wait for the jobs, or answer at
once with :meth:`Format.accepted` and a status URL). The route pipeline
(:mod:`.pipeline`) runs every format's requests through those hooks, and the RunPod envelopes
(:mod:`sdworker.runpod.envelopes`) call the same object inside a job, so a format is written
once. This module imports no web framework: worker processes read formats without loading one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeAlias, TypeVar

from sdworker.core.aliases import unknown_model_message
from sdworker.core.errors import ModelNotFound
from sdworker.core.input import ModelFacts
from sdworker.core.jobs import Failure, JobGateway, JobView, Status
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.modelref import find_manifest, resolve

if TYPE_CHECKING:
    from fastapi import Request

R = TypeVar("R")

GatewayGetter: TypeAlias = "Callable[[Request], JobGateway]"


class WebhookSend(Protocol):
    """Posts a JSON body to a URL later, retrying as the server's webhooks do. An ``event``
    of a series (``key``: one prediction) is sent only if the subscription ``wanted`` it, in
    order, the ones before the final ``completed`` throttled and tried once
    (:mod:`sdworker.server.webhooks`)."""

    def __call__(
        self,
        url: str,
        body: dict[str, Any],
        *,
        event: str = ...,
        wanted: Collection[str] | None = ...,
        key: str | None = ...,
    ) -> object: ...


WebhookGetter: TypeAlias = "Callable[[Request], WebhookSend]"


@dataclass(frozen=True)
class Models:
    """What decoding knows of the deployment: the baked models and whether results upload.

    ``manifests`` None means the models are not known here: model names pass through to
    the job's own validation."""

    manifests: list[Manifest] | None = None
    default_model: str | None = None
    uploads: bool = False
    #: the most pixels an input image may declare (``SDWORKER_MAX_INPUT_PIXELS``), for formats
    #: that read an image themselves (OpenAI's edit masks)
    max_input_pixels: int = 64 * 1024 * 1024

    def manifest(self, name: str | None) -> Manifest | None:
        """The baked model called exactly ``name``, if it is known here."""
        return find_manifest(self.manifests or [], name)

    def facts(self, name: str | None) -> ModelFacts | None:
        """What validation knows of the baked model called ``name`` (None: the default), its
        family first: a format maps its fields for that family. None when the model is not
        known here (the job's own validation names it)."""
        manifest = self.manifest(name if name is not None else self.default_model)
        return ModelFacts.of(manifest) if manifest is not None else None

    def resolve(self, ref: str) -> str:
        """The baked model ``ref`` names, in any of the ways :func:`.modelref.resolve` reads;
        :class:`ModelNotFound` when none does. Where the models are not known here, ``ref``
        passes through to the job's own validation."""
        if self.manifests is None:
            return ref
        name = resolve(self.manifests, ref)
        if name is None:
            raise ModelNotFound(self.unknown_message(ref))
        return name

    def unknown_message(self, ref: str | None) -> str:
        """The message for a model name no baked model answers to."""
        return unknown_model_message(ref, [m.name for m in self.manifests or []])


#: how the endpoint answers a format's calls: ``sync`` waits for the jobs and answers with
#: :meth:`Format.encode`; ``queued`` answers at once with :meth:`Format.accepted`, and the
#: format's status route reports the result
Answers = Literal["sync", "queued"]


@dataclass
class Decoded(Generic[R]):
    """A request the format read: the native inputs to run in turn, and its own reading."""

    inputs: list[dict[str, Any]]
    request: R
    #: where to POST the answer, for a request answered at once (DeepInfra's ``webhook``)
    webhook: str | None = None
    #: how this request is answered, where not as its format's ``answers`` (a format whose
    #: clients choose, by a header or a field, to wait or not)
    answers: Answers | None = None
    #: the jobs the inputs became, in order, once the endpoint has queued them
    job_ids: list[str] = field(default_factory=list)
    #: native field -> the request's name for it, per input, where the names depend on the
    #: request (a ComfyUI workflow's node inputs); None: the format's :attr:`Format.names`
    names: Sequence[Mapping[str, str]] | None = None

    def names_of(self, index: int, default: Mapping[str, str]) -> Mapping[str, str]:
        """How failures of input ``index`` are named: its own names, else ``default``."""
        return self.names[index] if self.names is not None else default


@dataclass(frozen=True)
class Raw:
    """An answer that is not JSON: its bytes and their content type (an image, as services
    that answer with the picture itself do)."""

    content: bytes
    media_type: str


@dataclass(frozen=True)
class Queued:
    """A request answered before its jobs finish: its (first) job, where to poll for it, and
    its place in the queue."""

    job_id: str
    status_url: str | None
    position: int | None


class Format(ABC, Generic[R]):
    """One request format (see the module docstring): three hooks to write, and the choices
    the route pipeline reads, each with the default most formats want."""

    #: a short name: ``a1111``, ``salad``, ``stochastic``, ``deepinfra``, ``openai``
    name: ClassVar[str]
    #: native field → the format's spelling, for failures of the native jobs
    names: Mapping[str, str] = {}
    #: the content type of its error bodies (None: JSON)
    media_type: str | None = None
    answers: Answers = "sync"
    #: whether its routes read form fields (``curl -F``, url-encoded) as well as JSON
    forms: bool = False

    @abstractmethod
    def decode(self, body: Any, models: Models, **where: str) -> Decoded[R]:
        """The native inputs of ``body``; raises with problems in the format's names."""

    @abstractmethod
    def encode(self, decoded: Decoded[R], outputs: list[dict[str, Any]], execution_ms: int) -> Any:
        """The format's answer, from the outputs of every native input in order: a JSON
        value, or :class:`Raw` bytes."""

    @abstractmethod
    def encode_error(self, failure: Failure) -> tuple[int, Any]:
        """The HTTP status and the format's body for a request that failed."""

    def accepted(self, decoded: Decoded[R], queued: Queued) -> tuple[int, Any]:
        """The HTTP status and body that answer a request at once (``answers`` is
        ``queued``, or the request has a ``webhook``)."""
        raise NotImplementedError(f"the {self.name} format answers every call when it is done")

    def wants_urls(self, decoded: Decoded[R]) -> bool:
        """Whether every output must carry a fetchable ``url`` (the endpoint stores the
        images a worker sent inline, as long as the job's result)."""
        return False

    def headers(self, decoded: Decoded[R], outputs: list[dict[str, Any]]) -> dict[str, str]:
        """Response headers of a finished request."""
        return {}

    def webhook_body(self, decoded: Decoded[R], status: int, body: Any) -> Any:
        """What the webhook of ``decoded`` receives, for the answer ``(status, body)``."""
        return body


#: failure codes that are no one's input, by the HTTP status they answer
_STATUSES: dict[str, int] = {
    "job_not_found": 404,
    "payload_too_large": 413,
    "cancelled": 409,
    "timed_out": 504,
    "unfinished": 504,
}


def http_status(failure: Failure, *, client: int, not_found: int | None = None) -> int:
    """The status for ``failure`` in a format that answers bad input with ``client`` (400 or
    422) and an unknown model with ``not_found`` (default ``client``); never 5xx for a
    client fault."""
    if failure.code in _STATUSES:
        return _STATUSES[failure.code]
    if failure.code == "model_not_found":
        return not_found or client
    return client if failure.client_fault else 500


def failure_of(view: JobView | None, wait_s: float) -> Failure | None:
    """Why a job waited on has no result (None when it completed), as data."""
    if view is None:
        return Failure("job_expired", "the job expired before its result was read")
    if view.status is Status.COMPLETED:
        return None
    if not view.status.is_terminal():
        return Failure("unfinished", f"generation did not finish within {wait_s:g} s")
    if view.status is Status.FAILED:
        return view.failure
    if view.status is Status.TIMED_OUT:
        return Failure("timed_out", view.error or f"job {view.id} timed out before it finished")
    return Failure("cancelled", view.error or f"job {view.id} was cancelled before it finished")


def app_gateway(request: Request) -> JobGateway:
    """The queue the server put on ``app.state.gateway``."""
    gateway: JobGateway = request.app.state.gateway
    return gateway


def app_webhooks(request: Request) -> WebhookSend:
    """The webhook sender the server put on ``app.state.send_webhook``."""
    send: WebhookSend = request.app.state.send_webhook
    return send


@dataclass
class FormatContext:
    """What a format's routes read from the local endpoint; one per app.

    ``gateway`` and ``webhooks`` find the queue and the webhook sender for a request; the
    server provides both (on ``app.state`` by default), so formats never import it."""

    registry: ModelRegistry
    settings: Settings
    gateway: GatewayGetter = app_gateway
    webhooks: WebhookGetter = field(default=app_webhooks)

    def manifests(self) -> list[Manifest]:
        """The baked models, read from the registry now."""
        return [info.manifest for info in self.registry.all()]

    def manifest(self, name: str | None) -> Manifest | None:
        """The baked model called exactly ``name``, if there is one."""
        return find_manifest(self.manifests(), name)

    def models(self) -> Models:
        """The deployment as decoding sees it."""
        return Models(
            self.manifests(),
            self.registry.default_name,
            self.has_bucket,
            self.settings.max_input_pixels,
        )

    @property
    def has_bucket(self) -> bool:
        """Whether workers upload results to S3 (every ``BUCKET_*`` credential is set; a
        half-done configuration stops the worker at start, not here)."""
        s = self.settings
        return bool(s.bucket_endpoint_url and s.bucket_access_key_id and s.bucket_secret_access_key)

    @property
    def body_limit(self) -> int:
        """The largest request body a format route reads (as ``/runsync``'s)."""
        return self.settings.runsync_body_limit_bytes

    @property
    def wait_s(self) -> float:
        """How long a synchronous call (A1111, DeepInfra) waits for its jobs."""
        return self.settings.dialect_wait_s
