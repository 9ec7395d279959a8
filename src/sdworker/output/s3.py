"""Where results go when they are uploaded: the bucket a job uses, and the boto3 uploader.

The bucket comes from the job's ``s3Config`` when it has one, else from the ``BUCKET_*``
settings, read the way RunPod's own upload helper reads them. ``BUCKET_ENDPOINT_URL`` is often
written as a bucket's own address (``https://my-bucket.s3.us-east-1.amazonaws.com``); then
the bucket name and region are taken from the host and requests go to the service endpoint.

boto3 is an optional dependency (the ``s3`` extra): it is imported only when an upload
actually happens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sdworker.core.errors import ConfigError, InvalidInput, Problem, UploadFailed, UploadRejected
from sdworker.core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
S3_CONFIG_KEYS = ("accessId", "accessSecret", "bucketName", "endpointUrl")
_S3_CONFIG_OPTIONAL = ("bucketName", "region")
BUCKET_ENV_NAMES = (
    "BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY, BUCKET_NAME"
)
# Error codes that a retry can fix although they come with a 4xx status.
_TRANSIENT_CODES = {"RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "Throttling"}


@dataclass(frozen=True)
class BucketConfig:
    """One bucket and the credentials to write into it."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    bucket: str
    region: str
    #: where it came from, for error messages: ``"s3Config"`` or ``"environment"``
    source: str = "environment"

    @property
    def addressing_style(self) -> str:
        """Path style everywhere but AWS: MinIO, R2, B2 and loopback servers all take it."""
        host = urlsplit(self.endpoint_url).hostname or ""
        return "auto" if host.endswith(".amazonaws.com") else "path"


@dataclass(frozen=True)
class _Endpoint:
    url: str
    bucket: str | None
    region: str | None


def split_endpoint(url: str) -> _Endpoint:
    """Separate a bucket named in an endpoint URL from the service endpoint.

    ``https://b.s3.us-east-1.amazonaws.com`` → (``https://s3.us-east-1.amazonaws.com``, b,
    us-east-1); ``https://b.nyc3.digitaloceanspaces.com`` → (``https://nyc3...``, b, nyc3);
    ``http://host:9000/b`` → (``http://host:9000``, b, None); anything else is kept as is.
    """
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    netloc = parts.netloc
    segments = [s for s in parts.path.split("/") if s]
    if segments:  # path style: the first segment is the bucket
        return _Endpoint(f"{parts.scheme}://{netloc}", segments[0], _region_of(host))
    labels = host.split(".")
    for i, label in enumerate(labels):
        if i > 0 and (label == "s3" or label.startswith("s3-")):
            bucket = ".".join(labels[:i])
            rest = netloc[len(bucket) + 1 :]
            return _Endpoint(f"{parts.scheme}://{rest}", bucket, _region_of(".".join(labels[i:])))
    if host.endswith(".digitaloceanspaces.com") and len(labels) == 4:
        return _Endpoint(f"{parts.scheme}://{netloc.split('.', 1)[1]}", labels[0], labels[1])
    return _Endpoint(f"{parts.scheme}://{netloc}", None, _region_of(host))


def _region_of(host: str) -> str | None:
    """The region written in an S3 host name, as RunPod's helper extracts it."""
    labels = host.split(".")
    for i, label in enumerate(labels):
        if label.startswith("s3-") and label != "s3-accelerate":
            return label[3:]
        # s3.REGION.domain.tld: a region label sits between "s3" and a two-label domain
        if label == "s3" and len(labels) - i > 3:
            return labels[i + 1]
    if host.endswith(".digitaloceanspaces.com") and len(labels) >= 3:
        return labels[-3]
    return None


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _reconcile(endpoint: _Endpoint, named: str | None, where: str) -> str | None:
    """The bucket name, when the URL and the explicit name agree (or only one is given)."""
    if endpoint.bucket and named and endpoint.bucket != named:
        raise ConfigError(
            f"{where}: the endpoint URL names bucket {endpoint.bucket!r} but the bucket name "
            f"is {named!r}; give the service endpoint without the bucket, or make them match"
        )
    return named or endpoint.bucket


def bucket_from_settings(settings: Settings) -> BucketConfig | None:
    """The operator's bucket from the ``BUCKET_*`` settings; ``None`` when none is set.

    A half-done configuration (an endpoint without keys, keys without a bucket name) is a
    :class:`ConfigError`, so a typo never silently turns uploads off.
    """
    given = {
        "BUCKET_ENDPOINT_URL": settings.bucket_endpoint_url,
        "BUCKET_ACCESS_KEY_ID": settings.bucket_access_key_id,
        "BUCKET_SECRET_ACCESS_KEY": settings.bucket_secret_access_key,
    }
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigError(f"S3 upload is half configured: {', '.join(missing)} not set")
    url = settings.bucket_endpoint_url or ""
    if not _valid_url(url):
        raise ConfigError(f"BUCKET_ENDPOINT_URL: expected an http(s) URL (got {url!r})")
    endpoint = split_endpoint(url)
    bucket = _reconcile(endpoint, settings.bucket_name, "BUCKET_ENDPOINT_URL/BUCKET_NAME")
    if not bucket:
        raise ConfigError(
            "no bucket name: set BUCKET_NAME, or give BUCKET_ENDPOINT_URL as the bucket's "
            "own address (https://BUCKET.s3.REGION.amazonaws.com)"
        )
    return BucketConfig(
        endpoint_url=endpoint.url,
        access_key_id=settings.bucket_access_key_id or "",
        secret_access_key=settings.bucket_secret_access_key or "",
        bucket=bucket,
        region=settings.bucket_region or endpoint.region or DEFAULT_REGION,
        source="environment",
    )


def bucket_from_job(s3_config: object) -> BucketConfig:
    """A job's own ``s3Config`` (RunPod's keys: accessId, accessSecret, bucketName,
    endpointUrl; ``region`` optional). Every problem is reported at once, secrets never echoed.
    """
    if not isinstance(s3_config, dict):
        raise InvalidInput.one(
            "s3Config", f"must be an object with {', '.join(S3_CONFIG_KEYS)}", has_value=False
        )
    problems: list[Problem] = []
    for key in sorted(set(s3_config) - set(S3_CONFIG_KEYS) - set(_S3_CONFIG_OPTIONAL)):
        problems.append(Problem(f"s3Config.{key}", "is not a known key", has_value=False))
    for key in ("accessId", "accessSecret", "endpointUrl", *_S3_CONFIG_OPTIONAL):
        value = s3_config.get(key)
        if value is None and key in _S3_CONFIG_OPTIONAL:
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(Problem(f"s3Config.{key}", "must be a non-empty string", None, False))
    url = s3_config.get("endpointUrl")
    if isinstance(url, str) and url.strip() and not _valid_url(url):
        problems.append(Problem("s3Config.endpointUrl", "must be an http(s) URL", url))
    if problems:
        raise InvalidInput(problems)
    endpoint = split_endpoint(str(url))
    try:
        bucket = _reconcile(endpoint, s3_config.get("bucketName"), "s3Config")
    except ConfigError as exc:
        raise InvalidInput.one("s3Config.bucketName", str(exc), has_value=False) from exc
    if not bucket:
        raise InvalidInput.one(
            "s3Config.bucketName",
            "is required unless endpointUrl is the bucket's own address",
            has_value=False,
        )
    return BucketConfig(
        endpoint_url=endpoint.url,
        access_key_id=s3_config["accessId"],
        secret_access_key=s3_config["accessSecret"],
        bucket=bucket,
        region=s3_config.get("region") or endpoint.region or DEFAULT_REGION,
        source="s3Config",
    )


def resolve_bucket(s3_config: object, settings: Settings) -> BucketConfig | None:
    """The bucket a job uploads to: its ``s3Config`` overrides the environment."""
    if s3_config is not None:
        return bucket_from_job(s3_config)
    return bucket_from_settings(settings)


def make_client(bucket: BucketConfig, *, connect_timeout_s: float = 10.0) -> Any:
    """A boto3 S3 client for ``bucket``. Retries are ours (see delivery), not botocore's."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ConfigError(
            "S3 upload needs boto3, which is not installed: pip install 'sdworker[s3]'"
        ) from exc
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": bucket.addressing_style},
        retries={"total_max_attempts": 1},
        connect_timeout=connect_timeout_s,
        read_timeout=60,
    )
    # A private session: the process-wide default would pick up ~/.aws profiles.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=bucket.endpoint_url,
        aws_access_key_id=bucket.access_key_id,
        aws_secret_access_key=bucket.secret_access_key,
        region_name=bucket.region,
        config=config,
    )


class S3Uploader:
    """Puts objects into one bucket and signs GET URLs for them (the delivery ``Uploader``)."""

    def __init__(self, bucket: BucketConfig, *, client: Any = None) -> None:
        self.bucket = bucket
        self.client = client if client is not None else make_client(bucket)

    def upload(self, key: str, data: bytes, content_type: str) -> None:
        """One attempt; :class:`UploadRejected` when retrying cannot help."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket.bucket, Key=key, Body=data, ContentType=content_type
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            message = f"{self._where(key)}: {code} (HTTP {status}): {error.get('Message', exc)}"
            if 400 <= status < 500 and status not in (408, 429) and code not in _TRANSIENT_CODES:
                raise UploadRejected(message) from exc
            raise UploadFailed(message) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, broken responses
            raise UploadFailed(f"{self._where(key)}: {exc}") from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; raises :class:`UploadFailed` when the bucket refuses."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise UploadFailed(f"{self._where(key)}: delete failed: {exc}") from exc

    def presign(self, key: str, expires_s: int) -> str:
        """A GET URL for ``key`` valid ``expires_s`` seconds (signed locally, no request)."""
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket.bucket, "Key": key},
            ExpiresIn=expires_s,
        )
        return url

    def _where(self, key: str) -> str:
        return (
            f"upload of s3://{self.bucket.bucket}/{key} to {self.bucket.endpoint_url} "
            f"(bucket from {self.bucket.source})"
        )
