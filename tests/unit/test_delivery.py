"""Delivery decisions with an in-memory uploader: inline, forced or automatic upload, the
too-large error, and retries with an injected sleep."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable

import pytest

from sdworker.core.errors import (
    ConfigError,
    InvalidInput,
    PayloadTooLarge,
    UploadFailed,
    UploadRejected,
)
from sdworker.core.settings import Settings
from sdworker.output.delivery import (
    ENVELOPE_HEADROOM_BYTES,
    check_delivery,
    deliver,
    object_key,
    output_size,
)
from sdworker.output.imageio import EncodedImage


class FakeUploader:
    """Stores objects in a dict; ``failures`` are raised, one per attempt, before success."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.attempts: list[str] = []
        self.failures = list(failures or [])
        self._lock = threading.Lock()

    def upload(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self.attempts.append(key)
            if self.failures:
                raise self.failures.pop(0)
            self.objects[key] = (data, content_type)

    def presign(self, key: str, expires_s: int) -> str:
        return f"https://bucket.test/{key}?expires={expires_s}"

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)


def image(
    size: int = 10, *, seed: int = 7, fmt: str = "png", nsfw: bool | None = None
) -> EncodedImage:
    return EncodedImage(bytes(range(256)) * (size // 256) + b"x" * (size % 256), fmt, seed, nsfw)


def recorder() -> tuple[list[float], Callable[[float], None]]:
    waits: list[float] = []
    return waits, waits.append


SETTINGS = Settings(upload_attempts=4, upload_backoff_s=0.5)


def test_small_result_goes_inline_with_seed_and_format() -> None:
    images = [image(100, seed=5), image(50, seed=6, fmt="jpeg", nsfw=True)]
    out = deliver(images, job_id="j1", upload=None, s3_config=None, settings=SETTINGS)
    assert [base64.b64decode(o["image"]) for o in out] == [i.data for i in images]
    assert out[0] == {"image": images[0].b64(), "seed": 5, "format": "png"}
    assert out[1]["nsfw_content_detected"] is True
    assert "nsfw_content_detected" not in out[0]


@pytest.mark.parametrize("sizes", [[0], [1], [2], [3], [1000, 4097], [5] * 8])
def test_output_size_is_the_exact_json_length(sizes: list[int]) -> None:
    images = [image(n, seed=i, nsfw=bool(i % 2)) for i, n in enumerate(sizes)]
    out = deliver(images, job_id="j", upload=False, s3_config=None, settings=SETTINGS)
    assert output_size(images) == len(json.dumps(out))


def test_upload_true_uploads_every_image_with_keys_and_content_types() -> None:
    fake = FakeUploader()
    images = [image(30, seed=100), image(30, seed=101, fmt="jpeg"), image(30, seed=102, fmt="webp")]
    out = deliver(
        images, job_id="abc-123", upload=True, s3_config=None, settings=SETTINGS, uploader=fake
    )
    assert sorted(fake.objects) == ["abc-123/0-100.png", "abc-123/1-101.jpg", "abc-123/2-102.webp"]
    assert fake.objects["abc-123/1-101.jpg"] == (images[1].data, "image/jpeg")
    assert fake.objects["abc-123/2-102.webp"][1] == "image/webp"
    assert out[0] == {
        "url": "https://bucket.test/abc-123/0-100.png?expires=3600",
        "seed": 100,
        "format": "png",
    }
    assert all("image" not in o for o in out)


def test_upload_true_without_a_bucket_is_an_input_error() -> None:
    with pytest.raises(InvalidInput) as info:
        deliver([image()], job_id="j", upload=True, s3_config=None, settings=SETTINGS)
    assert info.value.fields == ["upload"]
    assert "BUCKET_ENDPOINT_URL" in str(info.value) and "s3Config" in str(info.value)


def test_over_the_limit_without_a_bucket_says_how_big_and_how_to_fix() -> None:
    images = [image(3_000_000, seed=i) for i in range(3)]  # 12.0 MB in base64
    with pytest.raises(PayloadTooLarge) as info:
        deliver(images, job_id="j", upload=None, s3_config=None, settings=SETTINGS)
    message = str(info.value)
    assert "12.0 MB" in message and "10.0 MB" in message
    for fix in ("BUCKET_ENDPOINT_URL", "s3Config", "fewer or smaller", "jpeg or webp"):
        assert fix in message
    assert info.value.code == "payload_too_large"


def test_over_the_limit_with_a_bucket_uploads_automatically() -> None:
    fake = FakeUploader()
    images = [image(3_000_000, seed=i) for i in range(3)]
    out = deliver(images, job_id="j", upload=None, s3_config=None, settings=SETTINGS, uploader=fake)
    assert [o["url"].split("?")[0] for o in out] == [
        f"https://bucket.test/j/{i}-{i}.png" for i in range(3)
    ]
    assert len(fake.objects) == 3


def test_upload_false_over_the_limit_fails_even_with_a_bucket() -> None:
    # a client that set upload: false reads base64 only: a URL in place of the image is lost
    fake = FakeUploader()
    images = [image(3_000_000, seed=i) for i in range(3)]  # 12.0 MB in base64
    with pytest.raises(PayloadTooLarge) as info:
        deliver(images, job_id="j", upload=False, s3_config=None, settings=SETTINGS, uploader=fake)
    message = str(info.value)
    assert "12.0 MB" in message and "10.0 MB" in message
    assert "upload is false" in message and "fewer or smaller" in message
    assert fake.attempts == []


def test_upload_false_under_the_limit_goes_inline() -> None:
    fake = FakeUploader()
    out = deliver(
        [image(100)], job_id="j", upload=False, s3_config=None, settings=SETTINGS, uploader=fake
    )
    assert "image" in out[0] and fake.attempts == []


def test_limit_boundary_counts_the_envelope_headroom() -> None:
    images = [image(3000)]
    exact = output_size(images) + ENVELOPE_HEADROOM_BYTES
    fits = deliver(
        images, job_id="j", upload=None, s3_config=None, settings=SETTINGS, limit_bytes=exact
    )
    assert "image" in fits[0]
    with pytest.raises(PayloadTooLarge):
        deliver(
            images,
            job_id="j",
            upload=None,
            s3_config=None,
            settings=SETTINGS,
            limit_bytes=exact - 1,
        )


def test_runsync_limit_passed_by_the_caller_wins_over_the_setting() -> None:
    images = [image(3_000_000, seed=i) for i in range(3)]  # 12 MB: over 10, under 20
    out = deliver(
        images, job_id="j", upload=None, s3_config=None, settings=SETTINGS, limit_bytes=20_000_000
    )
    assert all("image" in o for o in out)


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    fake = FakeUploader([UploadFailed("503 SlowDown"), ConnectionResetError("reset")])
    waits, sleep = recorder()
    out = deliver(
        [image()],
        job_id="j",
        upload=True,
        s3_config=None,
        settings=SETTINGS,
        uploader=fake,
        sleep=sleep,
    )
    assert waits == [0.5, 1.0]
    assert fake.attempts == ["j/0-7.png"] * 3
    assert out[0]["url"].startswith("https://bucket.test/j/0-7.png")


def test_a_job_whose_upload_keeps_failing_reports_it() -> None:
    fake = FakeUploader([UploadFailed(f"boom {n}") for n in range(10)])
    waits, sleep = recorder()
    with pytest.raises(UploadFailed) as info:
        deliver(
            [image()],
            job_id="j",
            upload=True,
            s3_config=None,
            settings=SETTINGS,
            uploader=fake,
            sleep=sleep,
        )
    assert "after 4 attempts" in str(info.value) and "boom 3" in str(info.value)
    assert waits == [0.5, 1.0, 2.0]
    assert fake.objects == {}


def test_backoff_is_capped() -> None:
    fake = FakeUploader([UploadFailed("x")] * 3)
    waits, sleep = recorder()
    settings = Settings(upload_attempts=4, upload_backoff_s=20.0)
    deliver(
        [image()],
        job_id="j",
        upload=True,
        s3_config=None,
        settings=settings,
        uploader=fake,
        sleep=sleep,
    )
    assert waits == [20.0, 30.0, 30.0]


def test_a_rejected_upload_is_not_retried() -> None:
    fake = FakeUploader([UploadRejected("NoSuchBucket")])
    waits, sleep = recorder()
    with pytest.raises(UploadRejected, match="NoSuchBucket"):
        deliver(
            [image()],
            job_id="j",
            upload=True,
            s3_config=None,
            settings=SETTINGS,
            uploader=fake,
            sleep=sleep,
        )
    assert waits == [] and len(fake.attempts) == 1


def test_one_failing_image_fails_the_whole_job() -> None:
    class FailsOnSecond(FakeUploader):
        def upload(self, key: str, data: bytes, content_type: str) -> None:
            if key.startswith("j/1-"):
                raise UploadRejected(f"denied {key}")
            super().upload(key, data, content_type)

    with pytest.raises(UploadRejected, match=r"denied j/1-8\.png"):
        deliver(
            [image(seed=7), image(seed=8), image(seed=9)],
            job_id="j",
            upload=True,
            s3_config=None,
            settings=SETTINGS,
            uploader=FailsOnSecond(),
        )


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        ("sync-1f2e-u1", "sync-1f2e-u1/3-42.png"),
        ("../etc/passwd", "_etc_passwd/3-42.png"),
        ("a b/c", "a_b_c/3-42.png"),
        ("..", "job/3-42.png"),
    ],
)
def test_object_keys_are_safe(job_id: str, expected: str) -> None:
    assert object_key(job_id, 3, image(seed=42)) == expected


@pytest.mark.parametrize("expiry", [0, 7 * 24 * 3600 + 1])
def test_url_expiry_beyond_what_s3_signs_is_a_config_error(expiry: int) -> None:
    with pytest.raises(ConfigError, match="SDWORKER_URL_EXPIRY_S"):
        deliver(
            [image()],
            job_id="j",
            upload=True,
            s3_config=None,
            settings=Settings(url_expiry_s=expiry),
            uploader=FakeUploader(),
        )


def test_url_expiry_setting_reaches_the_presigner() -> None:
    out = deliver(
        [image()],
        job_id="j",
        upload=True,
        s3_config=None,
        settings=Settings(url_expiry_s=90),
        uploader=FakeUploader(),
    )
    assert out[0]["url"].endswith("?expires=90")


def test_check_delivery_rejects_before_any_work() -> None:
    check_delivery(None, None, SETTINGS)  # nothing asked, nothing configured: fine
    check_delivery(False, None, SETTINGS)
    with pytest.raises(InvalidInput, match="upload: is true but no bucket"):
        check_delivery(True, None, SETTINGS)
    with pytest.raises(InvalidInput, match=r"s3Config\.accessId"):
        check_delivery(None, {"endpointUrl": "http://127.0.0.1:9/b"}, SETTINGS)
    configured = Settings(
        bucket_endpoint_url="http://127.0.0.1:9",
        bucket_access_key_id="k",
        bucket_secret_access_key="s",
        bucket_name="results",
    )
    check_delivery(True, None, configured)


def test_new_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"SDWORKER_UPLOAD_ATTEMPTS": "2", "SDWORKER_UPLOAD_BACKOFF_S": "0.1", "BUCKET_NAME": "b"}
    )
    assert (settings.upload_attempts, settings.upload_backoff_s, settings.bucket_name) == (
        2,
        0.1,
        "b",
    )
    assert Settings().payload_limit_bytes == 10_000_000


class FailsForOneKey(FakeUploader):
    """Every upload of ``bad`` is refused; the others land."""

    def __init__(self, bad: str) -> None:
        super().__init__()
        self.bad = bad

    def upload(self, key: str, data: bytes, content_type: str) -> None:
        if key == self.bad:
            with self._lock:
                self.attempts.append(key)
            raise UploadRejected(f"{key}: AccessDenied")
        super().upload(key, data, content_type)


def test_a_failed_upload_takes_back_the_images_that_landed() -> None:
    fake = FailsForOneKey("j/1-8.png")
    with pytest.raises(UploadRejected, match="AccessDenied"):
        deliver(
            [image(seed=7), image(seed=8), image(seed=9)],
            job_id="j",
            upload=True,
            s3_config=None,
            settings=SETTINGS,
            uploader=fake,
            sleep=lambda s: None,
        )
    assert set(fake.attempts) == {"j/0-7.png", "j/1-8.png", "j/2-9.png"}
    assert fake.objects == {}
