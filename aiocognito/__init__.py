"""aiocognito: asynchronous Amazon Cognito user-attribute updates, at high concurrency and in bulk.

Open one :class:`CognitoClient` and share it::

    async with aiocognito.CognitoClient(region_name="eu-west-1", user_pool_id="eu-west-1_AbC") as c:
        await c.update_user_attributes(access_token, {"custom:tier": "gold", "nickname": None})

Everything public is importable from this module; the underscored modules are private.
"""

from ._client import ClientState, ClientStatistics, CognitoClient
from ._config import Limits, RetryPolicy
from ._errors import (
    AiocognitoError,
    AliasExistsError,
    AttributeValidationError,
    CodeDeliveryFailureError,
    CodeMismatchError,
    CognitoError,
    CredentialsError,
    DeadlineExceededError,
    ExpiredCodeError,
    ForbiddenError,
    InternalErrorError,
    InvalidEmailRoleAccessPolicyError,
    InvalidLambdaResponseError,
    InvalidParameterError,
    InvalidSmsRoleAccessPolicyError,
    InvalidSmsRoleTrustRelationshipError,
    LimitExceededError,
    NotAuthorizedError,
    OperationNotEnabledError,
    PasswordResetRequiredError,
    QuotaDeadlineError,
    ResourceNotFoundError,
    TooManyRequestsError,
    TransportError,
    UnexpectedLambdaError,
    UserLambdaValidationError,
    UserNotConfirmedError,
    UserNotFoundError,
)
from ._models import CodeDelivery, UpdateResult, User
from ._version import __version__

__all__ = [
    "AiocognitoError",
    "AliasExistsError",
    "AttributeValidationError",
    "ClientState",
    "ClientStatistics",
    "CodeDelivery",
    "CodeDeliveryFailureError",
    "CodeMismatchError",
    "CognitoClient",
    "CognitoError",
    "CredentialsError",
    "DeadlineExceededError",
    "ExpiredCodeError",
    "ForbiddenError",
    "InternalErrorError",
    "InvalidEmailRoleAccessPolicyError",
    "InvalidLambdaResponseError",
    "InvalidParameterError",
    "InvalidSmsRoleAccessPolicyError",
    "InvalidSmsRoleTrustRelationshipError",
    "LimitExceededError",
    "Limits",
    "NotAuthorizedError",
    "OperationNotEnabledError",
    "PasswordResetRequiredError",
    "QuotaDeadlineError",
    "ResourceNotFoundError",
    "RetryPolicy",
    "TooManyRequestsError",
    "TransportError",
    "UnexpectedLambdaError",
    "UpdateResult",
    "User",
    "UserLambdaValidationError",
    "UserNotConfirmedError",
    "UserNotFoundError",
    "__version__",
]
