"""Delivery against a real S3-protocol server on 127.0.0.1: uploads, presigned URLs fetched
over HTTP, per-job s3Config, automatic upload of a result over RunPod's limit, the error when
no bucket is configured, and retries after injected failures."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from sdworker.core.errors import PayloadTooLarge, UploadFailed, UploadRejected
from sdworker.core.settings import Settings
from sdworker.output.delivery import deliver
from sdworker.output.imageio import EncodedImage, encode_image
from sdworker.output.s3 import S3Uploader, bucket_from_settings

if TYPE_CHECKING:  # the fixture's type; conftest modules are not imported by name
    from conftest import S3Server

pytest.importorskip("boto3")


def fetch(url: str, server: S3Server) -> tuple[bytes, str]:
    assert url.startswith(server.endpoint_url + "/"), url  # never anywhere but loopback
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers["Content-Type"]


def noise(size: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="module")
def four_big_pngs() -> list[EncodedImage]:
    """The result that breaks other workers: four 1024x1024 PNGs (noise barely compresses)."""
    return [
        encode_image(noise(1024, seed), "png", seed=1000 + seed, parameters="a prompt")
        for seed in range(4)
    ]


@pytest.fixture(scope="module")
def small_images() -> list[EncodedImage]:
    return [
        encode_image(noise(64, 1), "png", seed=41, parameters=None),
        encode_image(noise(64, 2), "jpeg", seed=42, parameters=None, nsfw=False),
    ]


class FaultInjector:
    """Short-circuits PutObject requests of one boto3 client with planned failures."""

    def __init__(self, uploader: S3Uploader, plan: list[str]) -> None:
        self.plan = list(plan)
        self.calls = 0
        uploader.client.meta.events.register("before-send.s3.PutObject", self)

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import EndpointConnectionError

        self.calls += 1
        if not self.plan:
            return None  # let the request through to the server
        fault = self.plan.pop(0)
        if fault == "refused":
            raise EndpointConnectionError(endpoint_url=request.url)
        code, status = {"slowdown": ("SlowDown", 503), "internal": ("InternalError", 500)}[fault]
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


def sleeps() -> tuple[list[float], Callable[[float], None]]:
    waits: list[float] = []
    return waits, waits.append


def test_upload_returns_presigned_urls_that_serve_the_exact_bytes(
    s3_server: S3Server, small_images: list[EncodedImage]
) -> None:
    bucket = s3_server.new_bucket()
    settings = s3_server.settings(bucket, url_expiry_s=900)
    out = deliver(small_images, job_id="job-1", upload=True, s3_config=None, settings=settings)
    assert s3_server.keys(bucket) == ["job-1/0-41.png", "job-1/1-42.jpg"]
    assert [set(entry) for entry in out] == [
        {"url", "seed", "format"},
        {"url", "seed", "format", "nsfw_content_detected"},
    ]
    for entry, image in zip(out, small_images, strict=True):
        data, content_type = fetch(entry["url"], s3_server)
        assert data == image.data
        assert content_type == image.content_type
        assert entry["seed"] == image.seed and entry["format"] == image.format
        assert parse_qs(urlsplit(entry["url"]).query)["X-Amz-Expires"] == ["900"]


def test_job_s3_config_overrides_the_environment(
    s3_server: S3Server, small_images: list[EncodedImage]
) -> None:
    env_bucket, job_bucket = s3_server.new_bucket(), s3_server.new_bucket()
    settings = s3_server.settings(env_bucket)
    out = deliver(
        small_images[:1],
        job_id="job-2",
        upload=True,
        s3_config=s3_server.s3_config(job_bucket),
        settings=settings,
    )
    assert s3_server.keys(env_bucket) == []
    assert s3_server.keys(job_bucket) == ["job-2/0-41.png"]
    assert fetch(out[0]["url"], s3_server)[0] == small_images[0].data


def test_job_s3_config_may_name_the_bucket_in_the_endpoint_url(
    s3_server: S3Server, small_images: list[EncodedImage]
) -> None:
    bucket = s3_server.new_bucket()
    config = s3_server.s3_config(bucket)
    del config["bucketName"]
    config["endpointUrl"] = f"{s3_server.endpoint_url}/{bucket}"
    out = deliver(
        small_images[:1], job_id="job-3", upload=True, s3_config=config, settings=Settings()
    )
    assert s3_server.keys(bucket) == ["job-3/0-41.png"]
    assert fetch(out[0]["url"], s3_server)[0] == small_images[0].data


def test_result_over_the_limit_is_uploaded_automatically(
    s3_server: S3Server, four_big_pngs: list[EncodedImage]
) -> None:
    inline_mb = len(json.dumps([{"image": i.b64(), "seed": i.seed} for i in four_big_pngs])) / 1e6
    assert inline_mb > 10  # the premise: this cannot go back through /run inline
    bucket = s3_server.new_bucket()
    out = deliver(
        four_big_pngs,
        job_id="big",
        upload=None,
        s3_config=None,
        settings=s3_server.settings(bucket),
    )
    assert [entry["seed"] for entry in out] == [1000, 1001, 1002, 1003]
    assert all("image" not in entry for entry in out)
    assert len(json.dumps(out)) < 10_000  # what travels back is just URLs
    for entry, image in zip(out, four_big_pngs, strict=True):
        assert fetch(entry["url"], s3_server) == (image.data, "image/png")


def test_the_same_result_fits_the_runsync_limit_inline(
    s3_server: S3Server, four_big_pngs: list[EncodedImage]
) -> None:
    bucket = s3_server.new_bucket()
    out = deliver(
        four_big_pngs,
        job_id="big-sync",
        upload=None,
        s3_config=None,
        settings=s3_server.settings(bucket),
        limit_bytes=20_000_000,
    )
    assert [base64.b64decode(entry["image"]) for entry in out] == [i.data for i in four_big_pngs]
    assert s3_server.keys(bucket) == []


def test_result_over_the_limit_without_a_bucket_fails_clearly(
    four_big_pngs: list[EncodedImage],
) -> None:
    with pytest.raises(PayloadTooLarge) as info:
        deliver(four_big_pngs, job_id="big", upload=None, s3_config=None, settings=Settings())
    message = str(info.value)
    size_mb = sum(len(i.b64()) for i in four_big_pngs) / 1e6
    assert f"{size_mb:.1f} MB" in message and "10.0 MB payload limit" in message
    assert "BUCKET_ENDPOINT_URL" in message and "s3Config" in message


def test_upload_is_retried_after_injected_failures(
    s3_server: S3Server, small_images: list[EncodedImage]
) -> None:
    bucket = s3_server.new_bucket()
    settings = s3_server.settings(bucket)
    config = bucket_from_settings(settings)
    assert config is not None
    uploader = S3Uploader(config)
    faults = FaultInjector(uploader, ["slowdown", "refused"])
    waits, sleep = sleeps()
    out = deliver(
        small_images[:1],
        job_id="flaky",
        upload=True,
        s3_config=None,
        settings=settings,
        uploader=uploader,
        sleep=sleep,
    )
    assert faults.calls == 3 and waits == [0.25, 0.5]
    assert s3_server.keys(bucket) == ["flaky/0-41.png"]
    assert fetch(out[0]["url"], s3_server)[0] == small_images[0].data


def test_upload_that_keeps_failing_fails_the_job(
    s3_server: S3Server, small_images: list[EncodedImage]
) -> None:
    bucket = s3_server.new_bucket()
    settings = s3_server.settings(bucket, upload_attempts=3)
    config = bucket_from_settings(settings)
    assert config is not None
    uploader = S3Uploader(config)
    faults = FaultInjector(uploader, ["internal"] * 10)
    waits, sleep = sleeps()
    with pytest.raises(UploadFailed) as info:
        deliver(
            small_images[:1],
            job_id="down",
            upload=True,
            s3_config=None,
            settings=settings,
            uploader=uploader,
            sleep=sleep,
        )
    assert "after 3 attempts" in str(info.value) and "InternalError" in str(info.value)
    assert faults.calls == 3 and waits == [0.25, 0.5]
    assert s3_server.keys(bucket) == []


def test_missing_bucket_is_rejected_without_retrying(
    s3_server: S3Server, small_images: list[EncodedImage]
) -> None:
    waits, sleep = sleeps()
    with pytest.raises(UploadRejected) as info:
        deliver(
            small_images[:1],
            job_id="j",
            upload=True,
            s3_config=None,
            settings=s3_server.settings("no-such-bucket-here"),
            sleep=sleep,
        )
    assert "NoSuchBucket" in str(info.value) and "no-such-bucket-here" in str(info.value)
    assert waits == []


def test_a_job_whose_second_upload_is_refused_leaves_nothing_in_the_bucket(
    s3_server: S3Server, small_images: list[EncodedImage]
) -> None:
    from sdworker.core.errors import UploadRejected
    from sdworker.output.s3 import S3Uploader, bucket_from_settings

    bucket = s3_server.new_bucket()
    settings = s3_server.settings(bucket)
    config = bucket_from_settings(settings)
    assert config is not None
    real = S3Uploader(config)

    class RefusesTheJpeg:
        def upload(self, key: str, data: bytes, content_type: str) -> None:
            if key.endswith(".jpg"):
                raise UploadRejected(f"{key}: AccessDenied")
            real.upload(key, data, content_type)

        def presign(self, key: str, expires_s: int) -> str:
            return real.presign(key, expires_s)

        def delete(self, key: str) -> None:
            real.delete(key)

    with pytest.raises(UploadRejected):
        deliver(
            small_images,
            job_id="job-2",
            upload=True,
            s3_config=None,
            settings=settings,
            uploader=RefusesTheJpeg(),
        )
    assert s3_server.keys(bucket) == []
