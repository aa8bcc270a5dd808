"""The one place that talks to aiobotocore: the client pool, one call, and error translation.

Nothing else in aiocognito imports aiobotocore or botocore. Two aiobotocore clients are opened
once per :class:`AiobotocoreTransport` and reused for every call:

* an *unsigned* client for the token operations (UpdateUserAttributes, GetUser, ...), which
  Cognito authorises by the access token alone, so a backend with no AWS credentials can use them;
* a *SigV4-signed* client for the admin operations.

botocore's own retries are switched off (one attempt): retrying belongs to aiocognito's engine.

botocore logs request and response bodies at DEBUG. While one of our calls runs, a filter on the
botocore and aiobotocore loggers replaces those bodies and scrubs every secret the request
carried (token, attribute values, client metadata) from any other record.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import aiobotocore.session
import aiohttp
import anyio.to_thread
import botocore.exceptions
import botocore.useragent
from aiobotocore.config import AioConfig
from botocore import UNSIGNED

from . import _log
from ._errors import (
    AiocognitoError,
    AttributeValidationError,
    CognitoError,
    ConfigurationError,
    CredentialsError,
    TooManyRequestsError,
    TransportError,
    error_class_for_code,
    error_code,
)
from ._operations import OPERATIONS
from ._protocol import Transport

__all__ = ["AiobotocoreTransport", "Transport", "scrub"]

SERVICE = "cognito-idp"

REDACTED = "<redacted>"


# --------------------------------------------------------------------------------------------
# Redaction


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Replace every form a secret may take in ``text`` (raw, JSON-escaped, repr'd) by a marker."""
    for secret in secrets:
        if len(secret) < _MIN_SCRUB_LENGTH:
            continue
        for form in _forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


# Shorter secrets would match ordinary words; bodies, where short values actually occur, are
# redacted wholesale instead.
_MIN_SCRUB_LENGTH = 4


def _forms(secret: str) -> tuple[str, ...]:
    escaped = json.dumps(secret)[1:-1]
    unicode_escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    # Inside repr(bytes) of a JSON body: b'..."<escaped>"...'
    in_bytes_repr = repr(b'"' + escaped.encode())[3:-1]
    return tuple(dict.fromkeys((secret, escaped, unicode_escaped, in_bytes_repr)))


_CALL_SECRETS: contextvars.ContextVar[Sequence[str] | None] = contextvars.ContextVar(
    "aiocognito_call_secrets", default=None
)


class _RedactingFilter(logging.Filter):
    """Redacts bodies and secrets from botocore's records while an aiocognito call runs.

    On the ``aiocognito`` logger, a record names the call's secrets itself (engine records are
    written outside the call's context); they are taken off the record here, so no handler or
    formatter ever sees them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = record.__dict__.pop(_log.SECRETS_ATTRIBUTE, None) or _CALL_SECRETS.get()
        if secrets is None:
            return True
        template = str(record.msg)
        if "body" in template.lower() or "with params" in template:
            # "Making request for ... with params: {..., 'body': b'...'}" and
            # "Response body:\n b'...'" carry tokens and attribute values we may not know.
            record.msg = template.split("%", 1)[0].rstrip(" :\n") + ": " + REDACTED
            record.args = ()
            return True
        try:
            rendered = record.getMessage()
        except Exception:  # a broken record is not ours to fix; drop its arguments
            rendered = template
        cleaned = scrub(rendered, secrets)
        if cleaned != rendered or record.args:
            record.msg = cleaned
            record.args = ()
        return True


_FILTER = _RedactingFilter()
# Our own records pass through it from the start, whatever transport the client uses.
_log.logger.addFilter(_FILTER)


def _install_log_filter() -> None:
    """Attach the redacting filter to every botocore/aiobotocore logger that exists now."""
    names = ["aiocognito", "botocore", "aiobotocore"] + [
        name
        for name in logging.root.manager.loggerDict
        if name.startswith(("botocore.", "aiobotocore."))
    ]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# --------------------------------------------------------------------------------------------
# Error translation


def translate_error(exc: BaseException, operation: str, secrets: Sequence[str]) -> AiocognitoError:
    """Map one botocore/aiohttp failure to the most specific aiocognito error."""
    if isinstance(exc, botocore.exceptions.ClientError):
        response: Mapping[str, Any] = exc.response
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        code = str(error.get("Code") or status or "Unknown")
        message = scrub(str(error.get("Message") or ""), secrets)
        request_id = meta.get("RequestId") or None
        cls = error_class_for_code(code)
        if cls is CognitoError and status == 429:
            # A bare 429 (no modeled __type) is still a throttle.
            cls = TooManyRequestsError
        return cls(message, code=code, operation=operation, request_id=request_id, status=status)
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return CredentialsError(
            f"{operation} is an admin operation and needs AWS credentials; none were found "
            "(set them in the environment, a profile, or CognitoClient's keywords)"
        )
    if isinstance(exc, botocore.exceptions.CredentialRetrievalError):
        return CredentialsError(
            f"{operation}: AWS credentials could not be loaded: {type(exc).__name__}"
        )
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        # botocore's message quotes the offending value; we never do.
        return AttributeValidationError(f"{operation}: botocore rejected the request parameters")
    if isinstance(
        exc,
        botocore.exceptions.HTTPClientError
        | botocore.exceptions.ConnectionError
        | aiohttp.ClientError
        | asyncio.TimeoutError
        | OSError,
    ):
        kind = type(exc).__name__
        return TransportError(f"{operation}: {kind}: {scrub(str(exc), secrets)}")
    return AiocognitoError(f"{operation}: unexpected {type(exc).__name__}")


# --------------------------------------------------------------------------------------------
# The aiobotocore transport


class AiobotocoreTransport:
    """Two pooled aiobotocore clients (unsigned for token calls, signed for admin calls)."""

    def __init__(
        self,
        *,
        region_name: str | None,
        endpoint_url: str | None = None,
        max_connections: int = 64,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        user_agent_extra: str = "",
    ) -> None:
        self._region_name = region_name
        self._endpoint_url = endpoint_url
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._credentials = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        self._profile_name = profile_name
        self._user_agent_extra = user_agent_extra
        self._stack: contextlib.AsyncExitStack | None = None
        self._methods: dict[str, Any] = {}
        self._session: aiobotocore.session.AioSession | None = None
        self._region: str | None = None

    def _config(self, region: str, *, signed: bool) -> AioConfig:
        options: dict[str, Any] = {
            "region_name": region,
            # One attempt: retrying is the engine's job, and botocore's legacy mode would not
            # even recognise Cognito's TooManyRequestsException at HTTP 400.
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "max_pool_connections": self._max_connections,
            "connect_timeout": self._connect_timeout,
            "read_timeout": self._read_timeout,
            "user_agent_extra": self._user_agent_extra,
        }
        if not signed:
            options["signature_version"] = UNSIGNED
        return AioConfig(**options)

    async def open(self) -> None:
        """Load the service model in a worker thread, then open both clients."""
        session = aiobotocore.session.AioSession(profile=self._profile_name)
        _share_loader(session)
        # botocore's own resolution: the argument, then AWS_DEFAULT_REGION, then the profile.
        region = self._region_name or session.get_config_variable("region")
        if not region:
            raise ConfigurationError(
                "no AWS region: pass region_name (--region on the command line), or set "
                "AWS_DEFAULT_REGION, or a region in the AWS profile"
            )
        # Parsing the gzipped service model and endpoint rules takes over a hundred milliseconds
        # of blocking I/O and CPU; do it off the event loop, once per thread: the loader caches
        # what it reads, and the transports opened in this thread share it (_share_loader).
        await anyio.to_thread.run_sync(_warm_loader, session)
        key_id, secret, token = self._credentials
        stack = contextlib.AsyncExitStack()
        try:
            for signed in (False, True):
                kwargs: dict[str, Any] = {
                    "region_name": region,
                    "endpoint_url": self._endpoint_url,
                    "config": self._config(region, signed=signed),
                }
                if signed:
                    kwargs.update(
                        aws_access_key_id=key_id,
                        aws_secret_access_key=secret,
                        aws_session_token=token,
                    )
                client = await stack.enter_async_context(session.create_client(SERVICE, **kwargs))
                _cache_user_agent(client)
                for op in OPERATIONS.values():
                    if op.signed == signed:
                        self._methods[op.name] = getattr(client, op.method)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._session, self._region = session, region
        _install_log_filter()

    async def account_id(self) -> str:
        """The AWS account id of the admin credentials (one STS GetCallerIdentity call).

        STS is reached at ``endpoint_url`` when one is set (moto serves every service there).

        Raises:
            ConfigurationError: The transport is not open, or STS refused or failed.
        """
        if self._session is None or self._region is None:
            raise ConfigurationError("the transport must be open to find the account id")
        key_id, secret, token = self._credentials
        try:
            async with self._session.create_client(
                "sts",
                region_name=self._region,
                endpoint_url=self._endpoint_url,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                aws_session_token=token,
                config=AioConfig(
                    connect_timeout=self._connect_timeout,
                    read_timeout=self._read_timeout,
                    retries={"total_max_attempts": 3, "mode": "standard"},
                ),
            ) as sts:
                identity = await sts.get_caller_identity()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise ConfigurationError(
                "quota_group='account' needs the credentials' account id; STS "
                f"GetCallerIdentity failed ({error_code(exc)})"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ConfigurationError(
                "quota_group='account' needs the credentials' account id; STS could not be "
                f"reached ({type(exc).__name__})"
            ) from None
        return str(identity["Account"])

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Make exactly one attempt; translate any failure into an aiocognito error."""
        method = self._methods.get(operation)
        if method is None:
            raise RuntimeError(f"transport is not open, or {operation!r} is not supported")
        reset = _CALL_SECRETS.set(secrets)
        try:
            response: dict[str, Any] = await method(**params)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise translate_error(exc, operation, secrets) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise translate_error(exc, operation, secrets) from exc
        finally:
            _CALL_SECRETS.reset(reset)
        return response

    async def aclose(self) -> None:
        """Close both clients and their connection pools."""
        stack, self._stack = self._stack, None
        self._methods.clear()
        self._session = None
        if stack is not None:
            await stack.aclose()


def _cache_user_agent(client: Any) -> None:
    """Build each client's User-Agent once per feature set instead of on every request.

    botocore rebuilds the header twice per request, about a fifth of the client's CPU per call.
    Everything in it is fixed per client except the per-request feature list (``m/...``), which
    comes from the request context; caching on that set gives exactly the string botocore
    would build. If botocore's internals differ from what we expect, nothing is cached.
    """
    creator = getattr(client, "_user_agent_creator", None)
    get_context = getattr(botocore.useragent, "get_context", None)
    original = getattr(creator, "to_string", None)
    if creator is None or get_context is None or original is None:
        return
    cache: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        key = frozenset(context.features) if context is not None else frozenset()
        value = cache.get(key)
        if value is None:
            value = cache[key] = original()
        return value

    creator.to_string = to_string


# botocore's data loader, one per data path and thread, shared by every session this module
# opens in that thread. Each new botocore session otherwise parses the service model, endpoints
# and partitions again (about 120 ms of CPU). Clients only read what the loader returns, as the
# clients of one session already share it, with one exception: botocore's endpoint resolver
# fills a region's entry in the endpoints data on first use. Within one thread that never
# interleaves with a read (it runs between awaits); threads, each with its own event loop,
# keep loaders of their own.
_LOADERS = threading.local()


def _share_loader(session: aiobotocore.session.AioSession) -> None:
    loaders: dict[object, Any] | None = getattr(_LOADERS, "by_path", None)
    if loaders is None:
        loaders = _LOADERS.by_path = {}
    data_path = session.get_config_variable("data_path")
    loader = loaders.get(data_path)
    if loader is None:
        loaders[data_path] = session.get_component("data_loader")
    else:
        session.register_component("data_loader", loader)


def _warm_loader(session: aiobotocore.session.AioSession) -> None:
    loader = session.get_component("data_loader")
    for path in ("_retry", "endpoints", "partitions", "sdk-default-configuration"):
        with contextlib.suppress(Exception):
            loader.load_data_with_path(path)
    loader.load_service_model(SERVICE, "service-2")
    with contextlib.suppress(Exception):
        loader.load_service_model(SERVICE, "endpoint-rule-set-1")
