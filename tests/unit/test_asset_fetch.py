"""Fetching assets by reference: URLs through the guarded fetch into the disk cache (once per
source, once for two at a time), the local hub cache and a hub endpoint, tokens that never
reach another origin nor the cache index, and every refusal naming its part."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker.core import assetcache
from sdworker.core.assetcache import AssetCache
from sdworker.core.assetfetch import (
    AssetFetcher,
    AssetRefused,
    Reference,
    hub_file_problem,
    hub_id_problem,
    public_url,
    split_url,
)
from sdworker.core.assets import LORA
from sdworker.core.settings import Settings
from tests.assetserver import AssetServer, asset_server
from tests.integration.waits import wait_until
from tests.loras import write_safetensors

SD1_KEY = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"
SDXL_KEY = "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"
LIMIT = 1 << 20


def lora_bytes(tmp_path: Path, width: int = 768, key: str = SD1_KEY, fill: float = 0.0) -> bytes:
    return write_safetensors(
        tmp_path / f"l{width}{fill}.safetensors", {key: (4, width)}, fill=fill
    ).read_bytes()


@pytest.fixture
def server() -> Iterator[AssetServer]:
    with asset_server() as running:
        yield running


def fetcher(tmp_path: Path, **settings: object) -> AssetFetcher:
    values: dict[str, object] = {
        "models_dir": tmp_path / "models",
        "volume_dir": tmp_path / "volume",
        "state_dir": tmp_path / "state",
        "allow_private_urls": True,
        "hub_downloads": False,
        "hub_cache_dir": tmp_path / "hub",
        **settings,
    }
    return AssetFetcher(Settings(**values))


def test_a_url_is_downloaded_once_and_then_read_from_the_cache(
    tmp_path: Path, server: AssetServer
) -> None:
    server.state.files["ink.safetensors"] = body = lora_bytes(tmp_path)
    fetch = fetcher(tmp_path)
    ref = Reference(url=f"{server.url}/files/ink.safetensors")
    first = fetch.fetch(LORA, ref, max_bytes=LIMIT)
    again = fetcher(tmp_path).fetch(LORA, ref, max_bytes=LIMIT)  # another worker, same cache
    assert server.state.downloads["/files/ink.safetensors"] == 1
    digest = hashlib.sha256(body).hexdigest()
    assert first.key == again.key == f"sha256:{digest}" and first.family == "sd1"
    assert first.path.read_bytes() == body and first.source == "url"


def test_two_jobs_asking_for_one_url_at_once_download_it_once(
    tmp_path: Path, server: AssetServer
) -> None:
    server.state.files["ink.safetensors"] = lora_bytes(tmp_path)
    server.state.gate.clear()  # the first download waits until both have asked
    ref = Reference(url=f"{server.url}/files/ink.safetensors")
    keys: list[str] = []

    def job() -> None:
        keys.append(fetcher(tmp_path).fetch(LORA, ref, max_bytes=LIMIT).key)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    # the first download is in flight, held by the server; the second job waits for it
    wait_until(lambda: server.state.seen, "the first download to reach the server")
    server.state.gate.set()
    for thread in threads:
        thread.join(60)
    assert len(keys) == 2 and keys[0] == keys[1]
    assert server.state.downloads["/files/ink.safetensors"] == 1


@pytest.mark.parametrize(
    ("content", "part", "reason"),
    [
        (b"<html>log in first</html>", "url", "the file is not a safetensors file"),
        (b"\x80\x04\x95 a pickle", "url", "the file is not a safetensors file"),
        (b"x" * (LIMIT + 1), "url", f"is larger than {LIMIT} bytes (SDWORKER_LORA_MAX_BYTES)"),
    ],
    ids=["html", "pickle", "too-large"],
)
def test_a_download_that_is_no_safetensors_lora_is_refused(
    tmp_path: Path, server: AssetServer, content: bytes, part: str, reason: str
) -> None:
    server.state.files["bad.safetensors"] = content
    with pytest.raises(AssetRefused, match=re.escape(reason)) as refused:
        fetcher(tmp_path).fetch(
            LORA, Reference(url=f"{server.url}/files/bad.safetensors"), max_bytes=LIMIT
        )
    assert refused.value.part == part
    assert not list((tmp_path / "state" / "assets" / "blobs").iterdir())  # nothing cached


def test_tensors_that_are_no_lora_are_refused(tmp_path: Path, server: AssetServer) -> None:
    server.state.files["unet.safetensors"] = write_safetensors(
        tmp_path / "u.safetensors", {"conv_in.weight": (4, 4)}
    ).read_bytes()
    with pytest.raises(AssetRefused, match="holds no LoRA weights"):
        fetcher(tmp_path).fetch(
            LORA, Reference(url=f"{server.url}/files/unet.safetensors"), max_bytes=LIMIT
        )


def test_the_sha256_is_checked_and_names_a_cached_file_by_content(
    tmp_path: Path, server: AssetServer
) -> None:
    server.state.files["ink.safetensors"] = body = lora_bytes(tmp_path)
    digest = hashlib.sha256(body).hexdigest()
    url = f"{server.url}/files/ink.safetensors"
    with pytest.raises(AssetRefused, match=f"does not match: the file's sha256 is {digest}") as bad:
        fetcher(tmp_path).fetch(LORA, Reference(url=url, sha256="0" * 64), max_bytes=LIMIT)
    assert bad.value.part == "sha256"
    fetcher(tmp_path).fetch(LORA, Reference(url=url, sha256=digest), max_bytes=LIMIT)
    # the same content by another address: the cache has it, nothing is downloaded
    other = Reference(url=f"{server.url}/files/elsewhere.safetensors", sha256=digest)
    assert fetcher(tmp_path).fetch(LORA, other, max_bytes=LIMIT).sha256 == digest
    assert sum(server.state.downloads.values()) == 2  # the refused one and the first good one


def test_a_token_goes_to_the_first_origin_only_and_its_file_to_it_only(tmp_path: Path) -> None:
    with asset_server() as api, asset_server() as bucket:
        bucket.state.files["ink.safetensors"] = lora_bytes(tmp_path)
        api.state.files["ink.safetensors"] = b"unused"
        url = f"{api.url}/redirect/x?to={bucket.url}/files/ink.safetensors"
        token = "civitai-token-abc"
        asset = fetcher(tmp_path).fetch(LORA, Reference(url=url, token=token), max_bytes=LIMIT)
        assert [s.authorization for s in api.state.seen] == [f"Bearer {token}"]
        assert [s.authorization for s in bucket.state.seen] == [None]  # R2 refuses a second auth
        # fetched with a token: not served from the cache to a request without it
        fetcher(tmp_path).fetch(LORA, Reference(url=url), max_bytes=LIMIT)
        fetcher(tmp_path).fetch(LORA, Reference(url=url, token=token), max_bytes=LIMIT)
        assert bucket.state.downloads["/files/ink.safetensors"] == 2
        index = (tmp_path / "state" / "assets" / "index.json").read_text()
        assert token not in index and asset.sha256 in index


def test_a_private_file_needs_its_token(tmp_path: Path, server: AssetServer) -> None:
    server.state.files["p.safetensors"] = lora_bytes(tmp_path)
    url = f"{server.url}/private/p.safetensors"
    with pytest.raises(AssetRefused, match="answered HTTP 401: the file needs a token"):
        fetcher(tmp_path).fetch(LORA, Reference(url=url), max_bytes=LIMIT)
    token = server.state.token
    assert (
        fetcher(tmp_path).fetch(LORA, Reference(url=url, token=token), max_bytes=LIMIT).family
        == "sd1"
    )


def test_a_token_in_the_url_stays_out_of_the_cache_key(tmp_path: Path, server: AssetServer) -> None:
    server.state.files["ink.safetensors"] = lora_bytes(tmp_path)
    url = f"{server.url}/files/ink.safetensors?type=Model&token=query-secret-99"
    asset = fetcher(tmp_path).fetch(LORA, Reference(url=url), max_bytes=LIMIT)
    assert asset.name == f"{server.url}/files/ink.safetensors?type=Model"
    assert "query-secret-99" not in (tmp_path / "state" / "assets" / "index.json").read_text()
    assert split_url(url) == (asset.name, "query-secret-99")
    assert public_url("https://user:pw@host:8443/a?token=t&x=1") == "https://host:8443/a?x=1"


def test_a_url_the_guard_refuses_is_never_fetched(tmp_path: Path, server: AssetServer) -> None:
    server.state.files["ink.safetensors"] = lora_bytes(tmp_path)
    closed = fetcher(tmp_path, allow_private_urls=False)
    with pytest.raises(AssetRefused, match="loopback") as refused:
        closed.fetch(LORA, Reference(url=f"{server.url}/files/ink.safetensors"), max_bytes=LIMIT)
    assert refused.value.part == "url" and server.state.seen == []


def hub_repo(root: Path, repo: str, files: dict[str, bytes], *, newline: bool = False) -> Path:
    """A hub cache folder as huggingface_hub (and RunPod's model cache) lays it out."""
    commit = "a" * 40
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    for name, body in files.items():
        blob = folder / "blobs" / hashlib.sha256(body).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(body)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(Path("../../blobs") / blob.name)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit + ("\n" if newline else ""))
    return snapshot


@pytest.mark.parametrize("newline", [False, True])  # RunPod's readers strip it; the hub's not
def test_a_hub_id_resolves_from_the_local_hub_cache_offline(tmp_path: Path, newline: bool) -> None:
    body = lora_bytes(tmp_path)
    hub_repo(
        tmp_path / "hub",
        "org/ink-lora",
        {"pytorch_lora_weights.safetensors": body, "README.md": b"x"},
        newline=newline,
    )
    fetch = fetcher(tmp_path)
    asset = fetch.fetch(LORA, Reference(hub="org/ink-lora"), max_bytes=LIMIT)
    assert asset.source == "hub" and asset.family == "sd1"
    assert asset.name == "org/ink-lora:pytorch_lora_weights.safetensors"
    named = fetch.fetch(
        LORA,
        Reference(hub="org/ink-lora", file="pytorch_lora_weights.safetensors"),
        max_bytes=LIMIT,
    )
    assert named.path == asset.path
    with pytest.raises(AssetRefused, match="does not match: the hub file's sha256") as bad:
        fetch.fetch(LORA, Reference(hub="org/ink-lora", sha256="1" * 64), max_bytes=LIMIT)
    assert bad.value.part == "sha256"
    good = hashlib.sha256(body).hexdigest()
    assert (
        fetch.fetch(LORA, Reference(hub="org/ink-lora", sha256=good), max_bytes=LIMIT).path
        == asset.path
    )


def test_a_hub_id_not_cached_is_refused_when_downloads_are_off(tmp_path: Path) -> None:
    with pytest.raises(AssetRefused, match="not in the local hub cache") as refused:
        fetcher(tmp_path).fetch(LORA, Reference(hub="org/absent"), max_bytes=LIMIT)
    assert refused.value.part == "hub"


def test_a_repository_of_several_files_needs_file(tmp_path: Path) -> None:
    body = lora_bytes(tmp_path)
    hub_repo(tmp_path / "hub", "org/pack", {"a.safetensors": body, "b.safetensors": body})
    with pytest.raises(
        AssetRefused,
        match=r"several \.safetensors files \(a.safetensors, b.safetensors\): give file",
    ) as refused:
        fetcher(tmp_path).fetch(LORA, Reference(hub="org/pack"), max_bytes=LIMIT)
    assert refused.value.part == "file"


def test_a_hub_file_is_downloaded_from_the_endpoint_with_the_operators_token(
    tmp_path: Path, server: AssetServer
) -> None:
    server.state.hub["org/remote"] = {"style.safetensors": lora_bytes(tmp_path, 2048, SDXL_KEY)}
    fetch = fetcher(tmp_path, hub_downloads=True, hub_endpoint=server.url, hf_token="hf_operator")
    asset = fetch.fetch(LORA, Reference(hub="org/remote"), max_bytes=LIMIT)
    assert asset.family == "sdxl" and asset.name == "org/remote:style.safetensors"
    assert {s.authorization for s in server.state.seen} == {"Bearer hf_operator"}
    fetch.fetch(LORA, Reference(hub="org/remote", file="style.safetensors"), max_bytes=LIMIT)
    assert server.state.downloads["/org/remote/resolve/main/style.safetensors"] == 1
    with pytest.raises(AssetRefused, match="HTTP 404: no such repository"):
        fetch.fetch(LORA, Reference(hub="org/none"), max_bytes=LIMIT)


@pytest.mark.parametrize(
    ("repo", "ok"),
    [
        ("org/name", True),
        ("Org-1/na.me_2", True),
        ("name", False),
        ("a/b/c", False),
        ("org/../x", False),
        ("org/a--b", False),
        ("org/x.git", False),
    ],
)
def test_hub_ids(repo: str, ok: bool) -> None:
    assert (hub_id_problem(repo) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("lora.safetensors", True),
        ("sub/lora.safetensors", True),
        ("../x", False),
        ("/abs", False),
        ("a//b", False),
        ("a\\b", False),
        ("", False),
        ("x\n", False),
    ],
)
def test_hub_file_names(name: str, ok: bool) -> None:
    assert (hub_file_problem(name) is None) is ok


def test_the_cache_evicts_the_least_recently_used_beyond_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assetcache, "GRACE_S", 0.0)
    cache = AssetCache(tmp_path / "cache", budget=250)
    added = []
    for i in range(3):
        temp = cache.temp_file()
        temp.write_bytes(bytes([i]) * 100)
        digest = hashlib.sha256(temp.read_bytes()).hexdigest()
        added.append(cache.add(f"url:{i}", temp, digest))
        if i == 1:
            assert cache.lookup("url:0") is not None  # used again: now the newest but one
    assert cache.lookup("url:1") is None and not added[1].path.exists()
    assert cache.lookup("url:0") is not None and cache.lookup("url:2") is not None


def test_a_recently_used_file_outlives_the_budget(tmp_path: Path) -> None:
    cache = AssetCache(tmp_path / "cache", budget=10)
    for i in range(2):
        temp = cache.temp_file()
        temp.write_bytes(bytes([i]) * 100)
        cache.add(f"url:{i}", temp, hashlib.sha256(temp.read_bytes()).hexdigest())
    assert cache.lookup("url:0") is not None  # a job prepared with it has yet to run


def test_a_redirect_within_the_origin_keeps_the_token(tmp_path: Path, server: AssetServer) -> None:
    server.state.files["p.safetensors"] = lora_bytes(tmp_path)
    url = f"{server.url}/redirect/x?to={server.url}/private/p.safetensors"
    ref = Reference(url=url, token=server.state.token)
    assert fetcher(tmp_path).fetch(LORA, ref, max_bytes=LIMIT).family == "sd1"
    assert [s.authorization for s in server.state.seen] == [f"Bearer {server.state.token}"] * 2
