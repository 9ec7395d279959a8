"""Which bucket a job uses (s3Config, BUCKET_* as RunPod reads them), and how S3 errors are
sorted into retryable and not. No network: the boto3 client is faked or only signs."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from sdworker.core.errors import ConfigError, InvalidInput, UploadFailed, UploadRejected
from sdworker.core.settings import Settings
from sdworker.output.s3 import (
    BucketConfig,
    S3Uploader,
    bucket_from_job,
    bucket_from_settings,
    make_client,
    resolve_bucket,
    split_endpoint,
)

ENV = Settings(
    bucket_endpoint_url="http://127.0.0.1:9000",
    bucket_access_key_id="env-key",
    bucket_secret_access_key="env-secret",
    bucket_name="env-bucket",
)
JOB = {
    "accessId": "job-key",
    "accessSecret": "job-secret-value",
    "bucketName": "job-bucket",
    "endpointUrl": "http://127.0.0.1:9001",
}


@pytest.mark.parametrize(
    ("url", "endpoint", "bucket", "region"),
    [
        (
            "https://my-bucket.s3.eu-west-1.amazonaws.com",
            "https://s3.eu-west-1.amazonaws.com",
            "my-bucket",
            "eu-west-1",
        ),
        (
            "https://my.dotted.bucket.s3.amazonaws.com",
            "https://s3.amazonaws.com",
            "my.dotted.bucket",
            None,
        ),
        (
            "https://b1.s3-us-west-2.amazonaws.com",
            "https://s3-us-west-2.amazonaws.com",
            "b1",
            "us-west-2",
        ),
        (
            "https://s3.us-east-2.amazonaws.com",
            "https://s3.us-east-2.amazonaws.com",
            None,
            "us-east-2",
        ),
        (
            "https://bkt.s3.us-west-004.backblazeb2.com",
            "https://s3.us-west-004.backblazeb2.com",
            "bkt",
            "us-west-004",
        ),
        (
            "https://bkt.nyc3.digitaloceanspaces.com",
            "https://nyc3.digitaloceanspaces.com",
            "bkt",
            "nyc3",
        ),
        (
            "https://nyc3.digitaloceanspaces.com",
            "https://nyc3.digitaloceanspaces.com",
            None,
            "nyc3",
        ),
        (
            "https://acct.r2.cloudflarestorage.com",
            "https://acct.r2.cloudflarestorage.com",
            None,
            None,
        ),
        (
            "https://acct.r2.cloudflarestorage.com/imgs/",
            "https://acct.r2.cloudflarestorage.com",
            "imgs",
            None,
        ),
        ("http://127.0.0.1:9000/results", "http://127.0.0.1:9000", "results", None),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000", None, None),
    ],
)
def test_split_endpoint_reads_the_bucket_from_the_url(
    url: str, endpoint: str, bucket: str | None, region: str | None
) -> None:
    got = split_endpoint(url)
    assert (got.url, got.bucket, got.region) == (endpoint, bucket, region)


def test_no_bucket_settings_means_no_bucket() -> None:
    assert bucket_from_settings(Settings()) is None
    assert resolve_bucket(None, Settings()) is None


def test_environment_bucket() -> None:
    bucket = bucket_from_settings(ENV)
    assert bucket == BucketConfig(
        "http://127.0.0.1:9000", "env-key", "env-secret", "env-bucket", "us-east-1", "environment"
    )
    assert bucket is not None and bucket.addressing_style == "path"
    assert "env-secret" not in repr(bucket)


def test_bucket_named_by_the_endpoint_host_as_runpod_documents_it() -> None:
    settings = ENV.with_(
        bucket_endpoint_url="https://imgs.s3.eu-central-1.amazonaws.com", bucket_name=None
    )
    bucket = bucket_from_settings(settings)
    assert bucket is not None
    assert (bucket.endpoint_url, bucket.bucket, bucket.region) == (
        "https://s3.eu-central-1.amazonaws.com",
        "imgs",
        "eu-central-1",
    )
    assert bucket.addressing_style == "auto"
    # the same name given twice is fine; BUCKET_REGION wins over the URL
    again = bucket_from_settings(settings.with_(bucket_name="imgs", bucket_region="eu-west-3"))
    assert again is not None and (again.bucket, again.region) == ("imgs", "eu-west-3")


def test_conflicting_bucket_names_are_a_config_error() -> None:
    settings = ENV.with_(bucket_endpoint_url="https://imgs.s3.amazonaws.com", bucket_name="other")
    with pytest.raises(ConfigError, match="names bucket 'imgs' but the bucket name is 'other'"):
        bucket_from_settings(settings)


def test_half_configured_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY"):
        bucket_from_settings(Settings(bucket_endpoint_url="http://127.0.0.1:9000"))
    with pytest.raises(ConfigError, match="no bucket name: set BUCKET_NAME"):
        bucket_from_settings(ENV.with_(bucket_name=None))
    with pytest.raises(ConfigError, match="BUCKET_ENDPOINT_URL: expected an http"):
        bucket_from_settings(ENV.with_(bucket_endpoint_url="s3://bucket"))


def test_job_s3_config_overrides_the_environment() -> None:
    bucket = resolve_bucket(JOB, ENV)
    assert bucket is not None
    assert (bucket.endpoint_url, bucket.access_key_id, bucket.bucket, bucket.source) == (
        "http://127.0.0.1:9001",
        "job-key",
        "job-bucket",
        "s3Config",
    )
    assert bucket.secret_access_key == "job-secret-value"


def test_job_s3_config_may_name_the_bucket_in_its_url() -> None:
    config = {k: v for k, v in JOB.items() if k != "bucketName"}
    bucket = bucket_from_job({**config, "endpointUrl": "https://pics.s3.ap-south-1.amazonaws.com"})
    assert (bucket.bucket, bucket.region) == ("pics", "ap-south-1")
    with pytest.raises(InvalidInput, match=r"s3Config\.bucketName: is required"):
        bucket_from_job(config)


def test_bad_job_s3_config_lists_every_problem_and_never_echoes_the_secret() -> None:
    with pytest.raises(InvalidInput) as info:
        bucket_from_job(
            {"accessSecret": "", "endpointUrl": "ftp://x", "bucketname": "typo", "accessId": 3}
        )
    assert info.value.fields == [
        "s3Config.bucketname",
        "s3Config.accessId",
        "s3Config.accessSecret",
        "s3Config.endpointUrl",
    ]
    with pytest.raises(InvalidInput) as info:
        bucket_from_job({**JOB, "endpointUrl": "nope"})
    assert "job-secret-value" not in str(info.value)
    with pytest.raises(InvalidInput, match="s3Config: must be an object"):
        bucket_from_job("accessId=x")


def test_missing_boto3_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    bucket = bucket_from_settings(ENV)
    assert bucket is not None
    with pytest.raises(ConfigError, match=r"pip install 'sdworker\[s3\]'"):
        make_client(bucket)


def test_presigned_url_is_path_style_on_a_loopback_endpoint() -> None:
    bucket = bucket_from_settings(ENV)
    assert bucket is not None
    url = S3Uploader(bucket).presign("j/0-1.png", 120)  # signed locally, no request
    assert url.startswith("http://127.0.0.1:9000/env-bucket/j/0-1.png?")
    assert "X-Amz-Expires=120" in url


class RaisingClient:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def put_object(self, **kwargs: Any) -> None:
        raise self.exc


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("NoSuchBucket", 404), UploadRejected),
        (client_error("AccessDenied", 403), UploadRejected),
        (client_error("SlowDown", 503), UploadFailed),
        (client_error("InternalError", 500), UploadFailed),
        (client_error("RequestTimeout", 400), UploadFailed),
        (client_error("TooManyRequests", 429), UploadFailed),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), UploadFailed),
    ],
)
def test_s3_errors_are_sorted_into_retryable_and_not(
    exc: Exception, kind: type[UploadFailed]
) -> None:
    bucket = bucket_from_settings(ENV)
    assert bucket is not None
    with pytest.raises(UploadFailed) as info:
        S3Uploader(bucket, client=RaisingClient(exc)).upload("j/0-1.png", b"x", "image/png")
    assert type(info.value) is kind
    assert "s3://env-bucket/j/0-1.png" in str(info.value)
    assert info.value.__cause__ is exc


def test_the_operators_client_is_reused_and_per_job_ones_are_not() -> None:
    from sdworker.output.delivery import Uploaders

    uploaders = Uploaders(ENV)
    first, second = uploaders(None), uploaders(None)
    assert first is second and isinstance(first, S3Uploader)
    assert uploaders(JOB) is not uploaders(JOB)
    assert Uploaders(ENV)(None) is not first  # kept by its owner, not process-wide
