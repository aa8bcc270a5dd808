"""aiocognito: asynchronous Amazon Cognito user-attribute updates, at high concurrency and in bulk.

Open one :class:`CognitoClient` and share it::

    async with aiocognito.CognitoClient(region_name="eu-west-1", user_pool_id="eu-west-1_AbC") as c:
        await c.update_user_attributes(access_token, {"custom:tier": "gold", "nickname": None})

Everything public is importable from this module; the underscored modules are private.
"""

from ._bulk import BulkStatistics, BulkUpdate
from ._client import ClientState, ClientStatistics, CognitoClient
from ._config import Limits, RetryPolicy
from ._errors import (
    AiocognitoError,
    AliasExistsError,
    AttributeValidationError,
    ClientClosedError,
    CodeDeliveryFailureError,
    CodeMismatchError,
    CognitoError,
    ConfigurationError,
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
    JournalLockedError,
    JournalMismatchError,
    JournalWriteError,
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
from ._io import CSV_DELETE, UpdateReader, read_updates
from ._limits import CategoryStatistics
from ._models import (
    AttributeUpdate,
    BadRow,
    CodeDelivery,
    UpdateOutcome,
    UpdateResult,
    User,
)
from ._version import __version__

__all__ = [
    "CSV_DELETE",
    "AiocognitoError",
    "AliasExistsError",
    "AttributeUpdate",
    "AttributeValidationError",
    "BadRow",
    "BulkStatistics",
    "BulkUpdate",
    "CategoryStatistics",
    "ClientClosedError",
    "ClientState",
    "ClientStatistics",
    "CodeDelivery",
    "CodeDeliveryFailureError",
    "CodeMismatchError",
    "CognitoClient",
    "CognitoError",
    "ConfigurationError",
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
    "JournalLockedError",
    "JournalMismatchError",
    "JournalWriteError",
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
    "UpdateOutcome",
    "UpdateReader",
    "UpdateResult",
    "User",
    "UserLambdaValidationError",
    "UserNotConfirmedError",
    "UserNotFoundError",
    "__version__",
    "read_updates",
]

# Tracebacks, reprs and docs show the public path (aiocognito.TooManyRequestsError), not the
# private module a name happens to live in; pickling resolves them through this namespace.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        _value.__module__ = "aiocognito"
del _name, _value
