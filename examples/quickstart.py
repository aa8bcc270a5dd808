"""Quickstart: every attribute operation against an embedded moto server, no AWS account needed.

Run it with ``make demo`` (or ``.venv/bin/python examples/quickstart.py``). It starts moto on a
free local port, creates a pool with a custom attribute, two users and an access token, then uses
aiocognito to update, delete and read back attributes, printing what it did.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import boto3
from moto.server import ThreadedMotoServer

import aiocognito

REGION = "us-east-1"
KEY_ID, SECRET = "demo", "demo"
KEYS = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET}
PASSWORD = "Perm-Passw0rd!"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def seed(endpoint_url: str) -> tuple[str, str]:
    """Create a pool, an app client, two users and an access token for one of them."""
    boto = boto3.client("cognito-idp", region_name=REGION, endpoint_url=endpoint_url, **KEYS)
    pool_id = boto.create_user_pool(
        PoolName=f"quickstart-{uuid.uuid4().hex[:6]}",
        Schema=[{"Name": "tier", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    client_id = boto.create_user_pool_client(
        UserPoolId=pool_id, ClientName="web", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    for username, email in (("alice", "alice@example.com"), ("bob", "bob@example.com")):
        boto.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "nickname", "Value": username},
            ],
        )
        boto.admin_set_user_password(
            UserPoolId=pool_id, Username=username, Password=PASSWORD, Permanent=True
        )
    token = boto.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD},
    )["AuthenticationResult"]["AccessToken"]
    print(f"seeded pool {pool_id} with users alice and bob; alice is signed in")
    return pool_id, token


async def main(endpoint_url: str) -> None:
    pool_id, alice_token = seed(endpoint_url)
    async with aiocognito.CognitoClient(
        region_name=REGION,
        user_pool_id=pool_id,
        endpoint_url=endpoint_url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    ) as cognito:
        # A user updates their own attributes with their access token (unsigned call).
        result = await cognito.update_user_attributes(
            alice_token, {"custom:tier": "gold", "given_name": "Alice"}
        )
        print(f"alice set custom:tier and given_name; codes sent: {len(result.code_deliveries)}")

        me = await cognito.get_user(alice_token)
        print(f"alice reads herself back: {dict(me.attributes)}")

        # An administrator updates another user (SigV4-signed call); None deletes.
        await cognito.admin_update_user_attributes("bob", {"custom:tier": "silver"})
        await cognito.admin_delete_user_attributes("bob", ["nickname"])
        bob = await cognito.admin_get_user("bob")
        print(f"admin set bob's tier and deleted his nickname: {dict(bob.attributes)}")
        print(f"bob is {bob.status}, enabled={bob.enabled}, created {bob.created:%Y-%m-%d}")

        # Bad input never leaves the process.
        try:
            await cognito.admin_update_user_attributes("bob", {"tier": "bronze"})
        except aiocognito.AttributeValidationError as exc:
            print(f"refused before sending: {exc}")

        # Service errors arrive as specific classes.
        try:
            await cognito.admin_get_user("nobody")
        except aiocognito.UserNotFoundError as exc:
            print(f"service error: {exc.code} ({type(exc).__name__})")

        print(f"client: {cognito!r}")


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        asyncio.run(main(f"http://127.0.0.1:{port}"))
    finally:
        server.stop()
