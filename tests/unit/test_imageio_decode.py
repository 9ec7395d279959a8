"""The guarded decode: dimensions checked from the header before any pixel is decoded,
truncated and corrupt images refused, only the listed formats, URLs through the guard."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from sdworker.core.errors import ImageFetchError, InvalidInput
from sdworker.core.netguard import FetchPolicy
from sdworker.output.imageio import ImagePolicy, decode_image, open_image

POLICY = ImagePolicy(FetchPolicy(timeout_s=2), max_pixels=4096 * 4096)


def encoded(fmt: str, size: tuple[int, int] = (16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buf, format=fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` (its data is a stub)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A 1 KB JPEG whose frame header is rewritten to declare ``width`` x ``height``."""
    data = bytearray(encoded("JPEG", (8, 8)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel data is decoded."""

    def load(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_listed_formats_decode(fmt: str) -> None:
    image = decode_image(base64.b64encode(encoded(fmt)).decode(), "image", POLICY)
    assert image.size == (16, 16)


def test_data_urls_decode() -> None:
    value = "data:image/png;base64," + base64.b64encode(encoded("PNG")).decode()
    assert decode_image(value, "image", POLICY).size == (16, 16)


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize(
    "raw",
    [jpeg_declaring(13000, 13000), png_declaring(12000, 12000), png_declaring(13000, 13000)[:200]],
    ids=["jpeg-13000", "png-12000", "truncated-png-13000"],
)
def test_bombs_are_refused_from_the_header(raw: bytes) -> None:
    assert len(raw) < 2000
    with pytest.raises(InvalidInput) as info:
        open_image(raw, "init_images[0]", 4096 * 4096)
    [problem] = info.value.problems
    assert problem.field == "init_images[0]"
    assert "SDWORKER_MAX_INPUT_PIXELS" in problem.message
    assert problem.value == f"{len(raw)} bytes"  # never the payload itself


def test_the_pixel_limit_is_the_setting() -> None:
    raw = encoded("PNG", (64, 64))
    assert open_image(raw, "image", 64 * 64).size == (64, 64)
    with pytest.raises(InvalidInput, match="at most 4095"):
        open_image(raw, "image", 64 * 64 - 1)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_images_are_refused_not_padded(fmt: str) -> None:
    raw = encoded(fmt, (64, 64))
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        open_image(raw[: len(raw) * 2 // 3], "mask", POLICY.max_pixels)


def test_a_corrupt_png_chunk_is_refused() -> None:
    raw = bytearray(encoded("PNG", (64, 64)))
    idat = raw.index(b"IDAT")
    raw[idat + 10] ^= 0xFF
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        open_image(bytes(raw), "image", POLICY.max_pixels)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO"])
def test_unlisted_formats_are_refused(fmt: str) -> None:
    with pytest.raises(InvalidInput, match=r"not a decodable image \(PNG, JPEG, WEBP\)"):
        open_image(encoded(fmt), "image", POLICY.max_pixels)


def test_garbage_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_image(base64.b64encode(b"not an image").decode(), "init_image", POLICY)
    assert info.value.fields == ["init_image"]


def test_a_private_url_is_a_client_error_on_its_field() -> None:
    with pytest.raises(ImageFetchError) as info:
        decode_image("http://127.0.0.1:9/x.png", "image_url", POLICY)
    assert info.value.fields == ["image_url"]
    assert str(info.value).startswith("invalid input: image_url: could not be fetched: points to")
    assert "refused" not in str(info.value)  # nothing about what the port would have said
