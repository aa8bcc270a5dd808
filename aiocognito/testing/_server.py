"""FakeCognito: a real HTTP server speaking Cognito's JSON 1.1 protocol, with quotas and faults.

Any boto3, botocore or aiobotocore client pointed at its ``endpoint_url`` works, as does
aiocognito. It runs in-process (``async with FakeCognito() as fake``), in a background thread
(``with fake.run_in_thread()``), or standalone (``aiocognito fake-server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from attrs import asdict, frozen

from ._backend import (
    AppliedUpdate,
    Backend,
    CustomAttribute,
    PoolInfo,
    SentCode,
    ServiceError,
)
from ._faults import Fault, Faults, Latency
from ._quota import DEFAULT_RATES, Quotas, QuotaStats
from ._setup import Setup

__all__ = ["FakeCognito", "FakeStats"]

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
_JSON = "application/x-amz-json-1.1"

#: Operations Cognito serves only to SigV4-signed requests.
SIGNED_OPERATIONS = frozenset(
    {
        "AdminUpdateUserAttributes",
        "AdminDeleteUserAttributes",
        "AdminGetUser",
        "AdminCreateUser",
        "AdminSetUserPassword",
        "AdminInitiateAuth",
        "CreateUserPool",
        "DescribeUserPool",
        "DeleteUserPool",
        "CreateUserPoolClient",
        "ListUsers",
    }
)


@frozen(kw_only=True)
class FakeStats:
    """What the fake has served.

    Attributes:
        requests: ``(operation, outcome)`` to count; the outcome is ``"ok"``, an error code, or
            ``"reset"`` for a connection the fake reset.
        quotas: Per-category quota state.
        faults_injected: Fault kind to how many times it fired.
    """

    requests: Mapping[tuple[str, str], int]
    quotas: Mapping[str, QuotaStats]
    faults_injected: Mapping[str, int]

    def count(self, operation: str | None = None, outcome: str | None = None) -> int:
        """Requests matching an operation and/or an outcome."""
        return sum(
            n
            for (op, out), n in self.requests.items()
            if (operation is None or op == operation) and (outcome is None or out == outcome)
        )


class FakeCognito:
    """A fake Cognito user-pool endpoint that enforces Cognito's semantics, quotas and faults.

    Seed it without HTTP (:meth:`create_pool`, :meth:`create_user`, :meth:`seed_users`,
    :meth:`issue_token`), run it, point a client at :attr:`endpoint_url`, then inspect what
    happened (:meth:`user_attributes`, :meth:`update_log`, :meth:`sent_codes`, :meth:`stats`).

    Args:
        region: The region in pool ids and token issuers.
        host: The interface to listen on.
        port: The port; 0 picks a free one.
        user_update_rps: The account-wide UserUpdate quota; ``None`` for no limit.
        user_read_rps: The account-wide UserRead quota; ``None`` for no limit.
        category_rps: Quotas for other categories (e.g. ``{"UserCreation": 50}``).
        per_user_write_rps: The per-user write limit; ``None`` for no limit.
        throttle_status: HTTP status of throttle answers: 400 (what Cognito sends) or 429.
        latency: Latency added to every request.
        faults: Fault rules; more can be added later through :attr:`faults`.
        seed: Seeds subs, codes, tokens and fault draws, for reproducible runs.
        clock: Wall-clock seconds for token and code expiry; injectable for tests.
        monotonic: Monotonic seconds for quota buckets and fault windows; injectable for tests.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
        user_update_rps: float | None = 25.0,
        user_read_rps: float | None = 120.0,
        category_rps: Mapping[str, float | None] | None = None,
        per_user_write_rps: float | None = 10.0,
        throttle_status: int = 400,
        latency: Latency | None = None,
        faults: Iterable[Fault] = (),
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if throttle_status not in (400, 429):
            raise ValueError("throttle_status must be 400 or 429")
        self.backend = Backend(region=region, clock=clock, seed=seed)
        rates = {**DEFAULT_RATES, **(category_rps or {})}
        rates["UserUpdate"] = user_update_rps
        rates["UserRead"] = user_read_rps
        self.quotas = Quotas(rates, per_user_write_rps=per_user_write_rps, clock=monotonic)
        self._monotonic = monotonic
        self._started = monotonic()
        self.faults = Faults(faults, seed=seed)
        self.latency = latency
        self.throttle_status = throttle_status
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._requests: dict[tuple[str, str], int] = {}
        self.endpoint_url = ""
        b = self.backend
        self._operations: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "UpdateUserAttributes": b.update_user_attributes,
            "AdminUpdateUserAttributes": b.admin_update_user_attributes,
            "DeleteUserAttributes": b.delete_user_attributes,
            "AdminDeleteUserAttributes": b.admin_delete_user_attributes,
            "GetUser": b.get_user,
            "AdminGetUser": b.admin_get_user,
            "GetUserAttributeVerificationCode": b.get_user_attribute_verification_code,
            "VerifyUserAttribute": b.verify_user_attribute,
            **Setup(b).operations(),
        }

    # ----------------------------------------------------------------------------------------
    # Seeding and inspection (no HTTP)

    def create_pool(
        self,
        name: str = "pool",
        *,
        custom_attributes: Iterable[CustomAttribute] = (),
        auto_verified_attributes: Iterable[str] = ("email",),
        require_verification_before_update: Iterable[str] = (),
        username_attributes: Iterable[str] = (),
        alias_attributes: Iterable[str] = (),
    ) -> PoolInfo:
        """Create a pool and an app client.

        Args:
            name: The pool's name.
            custom_attributes: The schema's custom attributes.
            auto_verified_attributes: Attributes Cognito verifies by sending a code (default
                email): changing them marks them unverified and sends a code.
            require_verification_before_update: ``AttributesRequireVerificationBeforeUpdate``:
                a change waits, and the old value stays, until VerifyUserAttribute.
            username_attributes: Attributes users sign in with instead of a username.
            alias_attributes: Attributes usable as aliases; they must be unique.
        """
        return self.backend.create_pool(
            name,
            custom_attributes=custom_attributes,
            auto_verified_attributes=auto_verified_attributes,
            require_verification_before_update=require_verification_before_update,
            username_attributes=username_attributes,
            alias_attributes=alias_attributes,
        )

    def create_user(
        self,
        pool_id: str,
        username: str,
        attributes: Mapping[str, str] | None = None,
        *,
        password: str | None = None,
        status: str = "CONFIRMED",
    ) -> str:
        """Create a confirmed user; return its ``sub``."""
        return self.backend.create_user(
            pool_id, username, attributes, password=password, status=status
        )

    def seed_users(
        self,
        pool_id: str,
        count: int,
        *,
        prefix: str = "user",
        attributes: Callable[[int], Mapping[str, str]] | None = None,
        password: str | None = None,
    ) -> list[str]:
        """Create ``count`` users named ``<prefix><i>`` quickly; return their usernames."""
        names = [f"{prefix}{i}" for i in range(count)]
        create = self.backend.create_user
        for i, name in enumerate(names):
            create(pool_id, name, attributes(i) if attributes else None, password=password)
        return names

    def issue_token(self, pool_id: str, username: str, *, expires_in: float = 3600.0) -> str:
        """Mint a valid access token for a user."""
        return self.backend.issue_token(pool_id, username, expires_in=expires_in)

    def revoke_token(self, token: str) -> None:
        """Revoke an access token."""
        self.backend.revoke_token(token)

    def user_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """The user's stored attributes."""
        return self.backend.user_attributes(pool_id, username)

    def pending_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """Values waiting for verification before they apply."""
        return self.backend.pending_attributes(pool_id, username)

    def update_log(self, pool_id: str, username: str) -> list[AppliedUpdate]:
        """Every change applied to the user, in order."""
        return self.backend.update_log(pool_id, username)

    def sent_codes(self, pool_id: str | None = None, username: str | None = None) -> list[SentCode]:
        """The verification codes "sent", oldest first; filter by pool and user."""
        return [
            c
            for c in self.backend.sent_codes
            if (pool_id is None or c.user_pool_id == pool_id)
            and (username is None or c.username == username)
        ]

    def reset(self) -> None:
        """Forget every pool, user, token and code, and the statistics; keep the configuration.

        Quota rates, faults and latency stay as configured; their counters start again.
        """
        self.backend.reset()
        self._requests.clear()
        self.faults.injected.clear()
        old = self.quotas
        self.quotas = Quotas(
            old.rates, per_user_write_rps=old.per_user_write_rps, clock=self._monotonic
        )

    def stats(self) -> FakeStats:
        """Requests by operation and outcome, quota state per category, faults fired."""
        return FakeStats(
            requests=dict(self._requests),
            quotas=self.quotas.stats(),
            faults_injected=dict(self.faults.injected),
        )

    # ----------------------------------------------------------------------------------------
    # Running

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> str:
        """Start serving on the running event loop; return the endpoint URL."""
        if self._runner is not None:
            raise RuntimeError("FakeCognito is already running")
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        app.router.add_get("/_fake/stats", self._control_stats)
        app.router.add_get("/_fake/users/{pool_id}/{username}", self._control_user)
        app.router.add_post("/_fake/seed", self._control_seed)
        # The reset endpoint of moto's server mode, so suites written for moto reset the fake.
        app.router.add_post("/moto-api/reset", self._control_reset)
        app.router.add_get("/_fake/pools/{pool_id}/attribute/{name}", self._control_attribute)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            # A client that gave up (read timeouts) cancels its handler, and stopping does not
            # wait on answers nobody is waiting for.
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.endpoint_url = f"http://{self._host}:{port}"
        self._started = self.quotas.started = self._monotonic()
        return self.endpoint_url

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[Self]:
        """Serve from a background thread with its own event loop, for sync tests and scripts."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.close()

        thread = threading.Thread(target=serve, name="FakeCognito", daemon=True)
        thread.start()
        started.wait()
        if failure:
            thread.join()
            raise failure[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    # ----------------------------------------------------------------------------------------
    # Request handling

    def _count(self, operation: str, outcome: str) -> None:
        key = (operation, outcome)
        self._requests[key] = self._requests.get(key, 0) + 1

    def _user_key(self, operation: str, body: Mapping[str, Any]) -> str | None:
        if operation.startswith("Admin"):
            return f"{body.get('UserPoolId')}/{body.get('Username')}"
        return self.backend.token_user_key(body.get("AccessToken"))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        handler = self._operations.get(operation) if target.startswith(TARGET_PREFIX) else None
        if handler is None:
            self._count(operation or "?", "UnknownOperationException")
            return _error(400, "UnknownOperationException", f"Unknown operation {target!r}")
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._count(operation, "SerializationException")
            return _error(400, "SerializationException", "Request body is not a JSON object")

        delay = self.latency.sample(self.faults.rng) if self.latency is not None else 0.0
        fault: Fault | None = None
        if self.faults:
            fault, extra = self.faults.decide(operation, self._monotonic() - self._started)
            delay += extra
        if delay > 0:
            await asyncio.sleep(delay)

        if operation in SIGNED_OPERATIONS and not request.headers.get(
            "Authorization", ""
        ).startswith("AWS4-HMAC-SHA256"):
            self._count(operation, "MissingAuthenticationTokenException")
            return _error(
                400, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )

        if self.quotas.admit(operation, self._user_key(operation, body)) is not None:
            self._count(operation, "TooManyRequestsException")
            return _error(self.throttle_status, "TooManyRequestsException", "Rate exceeded")

        if fault is not None:
            if fault.kind == "throttle":
                self._count(operation, "TooManyRequestsException")
                return _error(self.throttle_status, "TooManyRequestsException", "Rate exceeded")
            if fault.kind == "internal_error":
                self._count(operation, "InternalErrorException")
                return _error(500, "InternalErrorException", "Internal server error")
            if fault.kind == "reset_before":
                self._count(operation, "reset")
                return _reset(request)

        try:
            result = handler(body)
        except ServiceError as exc:
            self._count(operation, exc.code)
            return _error(exc.status, exc.code, exc.message)

        if fault is not None and fault.kind == "reset_after":
            self._count(operation, "reset")
            return _reset(request)
        if fault is not None and fault.kind == "internal_error_after":
            self._count(operation, "InternalErrorException")
            return _error(500, "InternalErrorException", "Internal server error")
        if fault is not None and fault.kind == "read_timeout":
            await asyncio.sleep(fault.delay)
        self._count(operation, "ok")
        return web.Response(
            body=json.dumps(result, default=_json_default).encode(),
            content_type=_JSON,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    # ----------------------------------------------------------------------------------------
    # Control endpoints, for a fake running in another process

    async def _control_stats(self, _request: web.Request) -> web.Response:
        stats = self.stats()
        return web.json_response(
            {
                "requests": [[op, out, n] for (op, out), n in sorted(stats.requests.items())],
                "quotas": {c: asdict(q) for c, q in stats.quotas.items()},
                "faults_injected": stats.faults_injected,
            }
        )

    async def _control_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": "ok"})

    async def _control_user(self, request: web.Request) -> web.Response:
        pool_id, username = request.match_info["pool_id"], request.match_info["username"]
        try:
            attributes = self.user_attributes(pool_id, username)
            pending = self.pending_attributes(pool_id, username)
            log = [asdict(u) for u in self.update_log(pool_id, username)]
        except ServiceError as exc:
            return web.json_response({"error": exc.code, "message": exc.message}, status=404)
        return web.json_response({"attributes": attributes, "pending": pending, "log": log})

    async def _control_attribute(self, request: web.Request) -> web.Response:
        """One attribute across a pool: each user's value now, and every value applied, in order."""
        pool_id, name = request.match_info["pool_id"], request.match_info["name"]
        pool = self.backend.pools.get(pool_id)
        if pool is None:
            return web.json_response({"error": "ResourceNotFoundException"}, status=404)
        values = {u.username: u.attributes.get(name) for u in pool.users.values()}
        history = {
            u.username: [entry.changes[name] for entry in u.log if name in entry.changes]
            for u in pool.users.values()
            if u.log
        }
        return web.json_response({"values": values, "history": history})

    async def _control_seed(self, request: web.Request) -> web.Response:
        spec = await request.json()
        pool = self.create_pool(
            spec.get("pool_name", "fake"),
            custom_attributes=[CustomAttribute(**c) for c in spec.get("custom_attributes", ())],
        )
        users = self.seed_users(
            pool.id,
            int(spec.get("users", 0)),
            prefix=spec.get("prefix", "user"),
            password=spec.get("password"),
        )
        tokens = [self.issue_token(pool.id, u) for u in users[: int(spec.get("tokens", 0))]]
        return web.json_response(
            {"pool_id": pool.id, "client_id": pool.client_id, "users": len(users), "tokens": tokens}
        )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}).encode(),
        content_type=_JSON,
        headers={"x-amzn-RequestId": str(uuid.uuid4()), "x-amzn-ErrorType": code},
    )


def _reset(request: web.Request) -> web.StreamResponse:
    """Reset the TCP connection (RST, not FIN) so the client sees no answer."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # The transport is gone: aiohttp finds nothing to write this to and drops it quietly.
    return web.Response(status=500)


def _json_default(value: object) -> object:
    if isinstance(value, float | int):
        return value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
