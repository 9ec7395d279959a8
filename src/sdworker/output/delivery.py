"""Turn encoded images into the job's ``output`` list, inline or uploaded, never lost.

RunPod drops a result over its payload cap (10 MB for ``/run``, 20 MB for ``/runsync``), so
a result is sized before it is returned: one that fits goes inline as base64; one that would
not fit is uploaded when a bucket is configured, and otherwise fails the job with an error
that says how big it was and how to fix it. ``upload: true`` uploads whatever the size;
``upload: false`` never uploads (clients that can only read base64 ask for it), so a result
too big to go inline fails with that error instead of turning into URLs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Protocol

from sdworker.core.errors import InvalidInput, PayloadTooLarge, UploadFailed, UploadRejected
from sdworker.core.media import EXTENSIONS
from sdworker.core.settings import Settings
from sdworker.output.imageio import EncodedImage
from sdworker.output.s3 import (
    BUCKET_ENV_NAMES,
    S3Uploader,
    resolve_bucket,
)

log = logging.getLogger(__name__)

#: room kept under the limit for the envelope around ``output`` (id, status, times, ...)
ENVELOPE_HEADROOM_BYTES = 64 * 1024
#: concurrent uploads per job; S3 is latency-bound, and a job has at most 8 images
MAX_PARALLEL_UPLOADS = 4
#: longest single wait between two attempts
MAX_BACKOFF_S = 30.0
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MB = 1_000_000


class Uploader(Protocol):
    """Stores one object and signs a GET URL for it (S3 in production, fakes in tests).

    ``upload`` raises :class:`UploadFailed` for a failure worth retrying and
    :class:`UploadRejected` for one that is not.
    """

    def upload(self, key: str, data: bytes, content_type: str) -> None: ...

    def presign(self, key: str, expires_s: int) -> str: ...

    def delete(self, key: str) -> None: ...


def deliver(
    images: list[EncodedImage],
    *,
    job_id: str,
    upload: bool | None,
    s3_config: dict[str, Any] | None,
    settings: Settings,
    limit_bytes: int | None = None,
    uploader: Uploader | None = None,
    uploaders: Uploaders | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """The job's output list (docs/api.md), one entry per image, in order.

    ``upload`` is the input field (``None`` when not given). Without ``upload: true`` the
    images go inline when the output fits ``limit_bytes`` (default
    ``settings.payload_limit_bytes``) less some headroom for the envelope; otherwise they are
    uploaded to the job's ``s3Config`` bucket or the configured one. ``upload: false`` means
    inline or nothing: a result over the limit raises :class:`PayloadTooLarge` even when a
    bucket is configured, because the caller cannot read a URL in place of the image.
    ``uploader`` replaces the S3 uploader built from the configuration; ``uploaders`` finds
    it (a worker passes its own, which keeps the operator's client); ``sleep`` is the wait
    between retries.

    Raises :class:`PayloadTooLarge` (too big, and no bucket or ``upload: false``), :class:`InvalidInput` (``upload:
    true`` without a bucket, a bad ``s3Config``), :class:`UploadFailed` (every retry failed)
    and :class:`ConfigError` (a half-done ``BUCKET_*`` configuration, boto3 missing).
    """
    limit = settings.payload_limit_bytes if limit_bytes is None else limit_bytes
    find = uploaders or Uploaders(settings)
    if upload is True:
        chosen = uploader or find(s3_config)
        if chosen is None:
            raise _no_bucket()
        return _upload_all(images, job_id, chosen, settings, sleep)

    size = output_size(images)
    budget = limit - ENVELOPE_HEADROOM_BYTES
    if size <= budget:
        return [_entry(image, image=image.b64()) for image in images]

    if upload is False:
        raise PayloadTooLarge(_too_large_message(images, size, limit, inline_only=True))
    chosen = uploader or find(s3_config)
    if chosen is None:
        raise PayloadTooLarge(_too_large_message(images, size, limit))
    log.info(
        "job %s: result is %.1f MB, over the %.1f MB payload limit; uploading %d images",
        job_id,
        size / _MB,
        limit / _MB,
        len(images),
    )
    return _upload_all(images, job_id, chosen, settings, sleep)


def check_delivery(upload: bool | None, s3_config: object, settings: Settings) -> None:
    """Reject, before any GPU work, what :func:`deliver` would reject for the configuration:
    a malformed ``s3Config``, or ``upload: true`` with no bucket anywhere."""
    if s3_config is None and upload is not True:
        return
    if resolve_bucket(s3_config, settings) is None:
        raise _no_bucket()


def output_size(images: list[EncodedImage]) -> int:
    """Bytes of the JSON of the inline output list, computed without base64-encoding."""
    # base64 is ASCII and needs no JSON escaping: its length is 4 * ceil(n / 3)
    b64_total = sum(4 * ((len(image.data) + 2) // 3) for image in images)
    skeleton = json.dumps([_entry(image, image="") for image in images])
    return len(skeleton) + b64_total


def object_key(job_id: str, index: int, image: EncodedImage) -> str:
    """``{job_id}/{index}-{seed}.{ext}``, with anything unusual in the job id replaced."""
    safe_id = _UNSAFE_KEY_CHARS.sub("_", job_id).strip(".") or "job"
    return f"{safe_id}/{index}-{image.seed}.{EXTENSIONS.get(image.format, image.format)}"


def _no_bucket() -> InvalidInput:
    return InvalidInput.one(
        "upload",
        f"is true but no bucket is configured: set {BUCKET_ENV_NAMES} on the worker, "
        "or send s3Config with the job",
        True,
    )


def _entry(encoded: EncodedImage, /, **where: str) -> dict[str, Any]:
    entry: dict[str, Any] = {**where, "seed": encoded.seed, "format": encoded.format}
    if encoded.nsfw is not None:
        entry["nsfw_content_detected"] = encoded.nsfw
    if encoded.interrupted:
        entry["interrupted"] = True
    return entry


class Uploaders:
    """The uploader for a job's bucket: the job's own ``s3Config`` (a client per job: its
    credentials are not kept around), or the operator's ``BUCKET_*`` bucket, the same for
    every job, whose client is made once and kept (boto3 clients are thread-safe and take
    ~70 ms to build)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._operator: S3Uploader | None = None
        self._lock = threading.Lock()

    def __call__(self, s3_config: object) -> Uploader | None:
        bucket = resolve_bucket(s3_config, self._settings)
        if bucket is None:
            return None
        if bucket.source != "environment":
            return S3Uploader(bucket)
        with self._lock:
            if self._operator is None:
                self._operator = S3Uploader(bucket)
            return self._operator


def _too_large_message(
    images: list[EncodedImage], size: int, limit: int, *, inline_only: bool = False
) -> str:
    formats = ", ".join(sorted({image.format for image in images}))
    head = (
        f"the result is {size / _MB:.1f} MB ({len(images)} {formats} images in base64), "
        f"over the {limit / _MB:.1f} MB payload limit"
    )
    smaller = "ask for fewer or smaller images, or output_format jpeg or webp"
    if inline_only:
        return (
            f"{head}, and upload is false so it cannot be uploaded instead. Drop upload: "
            f"false (with a bucket configured) to get URLs, or {smaller}"
        )
    return (
        f"{head}, and no bucket is configured to upload it to. Set {BUCKET_ENV_NAMES} on the "
        f"worker or send s3Config with the job to get URLs instead; or {smaller}"
    )


def _upload_all(
    images: list[EncodedImage],
    job_id: str,
    uploader: Uploader,
    settings: Settings,
    sleep: Callable[[float], None],
) -> list[dict[str, Any]]:
    expiry = settings.url_expiry_s  # in range: Settings checks it when built
    keys = [object_key(job_id, i, image) for i, image in enumerate(images)]
    started = time.perf_counter()

    def one(index: int) -> None:
        image = images[index]
        _with_retries(
            lambda: uploader.upload(keys[index], image.data, image.content_type),
            keys[index],
            settings,
            sleep,
        )

    workers = max(1, min(MAX_PARALLEL_UPLOADS, len(images)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
        futures = [pool.submit(one, i) for i in range(len(images))]
        wait(futures)
    failures = [exc for f in futures if (exc := f.exception()) is not None]
    if failures:
        # the job fails as a whole: take back the images that did land (best effort), so a
        # failed job leaves no half of its result in the bucket
        for key, future in zip(keys, futures, strict=True):
            if future.exception() is None:
                try:
                    uploader.delete(key)
                except UploadFailed as exc:
                    log.warning(
                        "job %s: could not remove %s after a failed upload: %s", job_id, key, exc
                    )
        raise failures[0]  # the first failure in image order
    log.info(
        "job %s: uploaded %d images (%.1f MB) in %.2f s",
        job_id,
        len(images),
        sum(len(image.data) for image in images) / _MB,
        time.perf_counter() - started,
    )
    return [
        _entry(image, url=uploader.presign(key, expiry))
        for image, key in zip(images, keys, strict=True)
    ]


def _with_retries(
    attempt: Callable[[], None], key: str, settings: Settings, sleep: Callable[[float], None]
) -> None:
    """Run ``attempt`` up to ``settings.upload_attempts`` times, backing off exponentially."""
    attempts = max(1, settings.upload_attempts)
    for n in range(1, attempts + 1):
        try:
            attempt()
            return
        except UploadRejected:
            raise  # a missing bucket or denied access stays so however long we wait
        except (UploadFailed, OSError) as exc:
            if n == attempts:
                raise UploadFailed(
                    f"uploading {key} failed after {attempts} attempts; last error: {exc}"
                ) from exc
            delay = min(MAX_BACKOFF_S, settings.upload_backoff_s * 2 ** (n - 1))
            log.warning("upload of %s failed (attempt %d/%d): %s", key, n, attempts, exc)
            sleep(delay)
