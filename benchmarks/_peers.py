"""The peers' clients, as every benchmark opens them: raw aiobotocore in one of botocore's retry
modes, and boto3 for a pool of threads with adaptive retries.

This module imports only what the peers need, so a peer's process measures the peer alone.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.config import Config

from benchmarks._common import CONCURRENCY, KEYS, REGION, THREADS


def raw_client(session: AioSession, mode: str, url: str) -> AbstractAsyncContextManager[Any]:
    """An aiobotocore client with ``mode`` retries and a pool of 64 connections."""
    config = AioConfig(max_pool_connections=CONCURRENCY, retries={"mode": mode})
    return session.create_client(  # type: ignore[no-any-return]
        "cognito-idp", region_name=REGION, endpoint_url=url, config=config, **KEYS
    )


def boto3_client(url: str) -> Any:
    """A boto3 client for a pool of 32 threads, adaptive retries."""
    config = Config(max_pool_connections=THREADS, retries={"mode": "adaptive"})
    return boto3.client("cognito-idp", region_name=REGION, endpoint_url=url, config=config, **KEYS)


def wire(attributes: dict[str, str]) -> list[dict[str, str]]:
    """Attributes as the API takes them."""
    return [{"Name": name, "Value": value} for name, value in attributes.items()]
