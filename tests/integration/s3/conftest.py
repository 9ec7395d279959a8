"""A real S3-protocol server (moto) on 127.0.0.1, started once for the S3 tests.

Nothing here may leave loopback: credentials are explicit, profile files and instance
metadata are switched off, and proxies are bypassed for 127.0.0.1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sdworker.core.settings import Settings

ACCESS_KEY = "testing-key"
SECRET_KEY = "testing-secret"


@dataclass(frozen=True)
class S3Server:
    """The running server and helpers to make buckets and read them back."""

    endpoint_url: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        """A fresh, empty bucket, so tests never see each other's objects."""
        name = f"results-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def settings(self, bucket: str, **changes: Any) -> Settings:
        """RunpodAdapter settings whose ``BUCKET_*`` point at ``bucket`` on this server."""
        return Settings(
            bucket_endpoint_url=self.endpoint_url,
            bucket_access_key_id=ACCESS_KEY,
            bucket_secret_access_key=SECRET_KEY,
            bucket_name=bucket,
            upload_backoff_s=0.25,
            **changes,
        )

    def s3_config(self, bucket: str) -> dict[str, str]:
        """A job's own ``s3Config`` for ``bucket`` on this server."""
        return {
            "accessId": ACCESS_KEY,
            "accessSecret": SECRET_KEY,
            "bucketName": bucket,
            "endpointUrl": self.endpoint_url,
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on 127.0.0.1 and a free port, for the whole session."""
    pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    isolated = {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in isolated.items():
            patch.setenv(name, value)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        try:
            yield S3Server(f"http://127.0.0.1:{port}")
        finally:
            server.stop()
