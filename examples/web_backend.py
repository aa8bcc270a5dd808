"""An aiohttp.web app: "update my profile" with the caller's own access token.

One CognitoClient lives as long as the app (opened in a cleanup context) and serves every
request. The token operations are unsigned, so the app needs no AWS credentials.

    PATCH /me   Authorization: Bearer <access token>   {"nickname": "ally", "website": null}

Errors map to HTTP statuses: bad input 422, an expired token 401, a rejected attribute 400,
an alias already taken 409, throttling or no answer 503 (with Retry-After).

    python examples/web_backend.py --region eu-west-1 [--endpoint-url URL] [--port 8080]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from aiohttp import web

import aiocognito

COGNITO = web.AppKey("cognito", aiocognito.CognitoClient)


def make_app(*, region: str, endpoint_url: str | None = None) -> web.Application:
    """Build the app; the Cognito client opens with the app and closes with it."""
    app = web.Application()

    async def cognito_client(app: web.Application) -> AsyncIterator[None]:
        async with aiocognito.CognitoClient(region_name=region, endpoint_url=endpoint_url) as c:
            app[COGNITO] = c
            yield

    app.cleanup_ctx.append(cognito_client)
    app.router.add_patch("/me", update_me)
    app.router.add_get("/me", read_me)
    return app


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise web.HTTPUnauthorized(text="send Authorization: Bearer <access token>")
    return header.removeprefix("Bearer ")


def _error(exc: aiocognito.AiocognitoError) -> web.HTTPException:
    """Map aiocognito's errors to HTTP; messages never carry tokens or values."""
    if isinstance(exc, aiocognito.AttributeValidationError):
        return web.HTTPUnprocessableEntity(text=str(exc))
    if isinstance(exc, aiocognito.NotAuthorizedError):
        return web.HTTPUnauthorized(text="the token has expired, or the attribute is not writable")
    if isinstance(exc, aiocognito.AliasExistsError):
        return web.HTTPConflict(text="that email or phone number is already in use")
    if isinstance(exc, aiocognito.TooManyRequestsError | aiocognito.TransportError):
        return web.HTTPServiceUnavailable(text="try again shortly", headers={"Retry-After": "1"})
    if isinstance(exc, aiocognito.CognitoError) and exc.code in {
        "InvalidParameterException",
        "UserLambdaValidationException",
    }:
        return web.HTTPBadRequest(text=exc.message)
    return web.HTTPBadGateway(text="the identity service failed")


async def update_me(request: web.Request) -> web.Response:
    body = await request.json()
    if not isinstance(body, dict):
        raise web.HTTPUnprocessableEntity(text="send a JSON object of attribute names to values")
    try:
        result = await request.app[COGNITO].update_user_attributes(
            _token(request), body, timeout=5.0
        )
    except aiocognito.AiocognitoError as exc:
        raise _error(exc) from exc
    return web.json_response(
        {
            "updated": sorted(body),
            "verification_sent_to": [d.destination for d in result.code_deliveries],
        }
    )


async def read_me(request: web.Request) -> web.Response:
    try:
        user = await request.app[COGNITO].get_user(_token(request), timeout=5.0)
    except aiocognito.AiocognitoError as exc:
        raise _error(exc) from exc
    return web.json_response({"username": user.username, "attributes": dict(user.attributes)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--region", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(region=args.region, endpoint_url=args.endpoint_url), port=args.port)


if __name__ == "__main__":
    main()
