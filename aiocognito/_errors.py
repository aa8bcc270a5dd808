"""The exceptions aiocognito raises.

Every error raised on purpose derives from :class:`AiocognitoError`::

    AiocognitoError
    ├── CognitoError                      the service answered with an error; .code keeps its code
    │   ├── AliasExistsError
    │   ├── CodeDeliveryFailureError
    │   ├── CodeMismatchError
    │   ├── ExpiredCodeError
    │   ├── ForbiddenError
    │   ├── InternalErrorError
    │   ├── InvalidEmailRoleAccessPolicyError
    │   ├── InvalidLambdaResponseError
    │   ├── InvalidParameterError
    │   ├── InvalidSmsRoleAccessPolicyError
    │   ├── InvalidSmsRoleTrustRelationshipError
    │   ├── LimitExceededError
    │   ├── NotAuthorizedError
    │   ├── OperationNotEnabledError
    │   ├── PasswordResetRequiredError
    │   ├── ResourceNotFoundError
    │   ├── TooManyRequestsError
    │   │   └── QuotaDeadlineError        client-side: the quota cannot fit the call in its deadline
    │   ├── UnexpectedLambdaError
    │   ├── UserLambdaValidationError
    │   ├── UserNotConfirmedError
    │   └── UserNotFoundError
    ├── TransportError                    no answer: connection refused or reset, timeouts
    │   └── DeadlineExceededError         the call's overall deadline passed
    ├── ClientClosedError                 (also a RuntimeError) the client was closed first
    ├── CredentialsError                  an admin operation found no AWS credentials
    ├── ConfigurationError                the client cannot be set up, e.g. no region
    ├── JournalMismatchError              a bulk journal belongs to a different input
    ├── JournalLockedError                another run is using the bulk journal
    ├── JournalWriteError                 the bulk journal cannot be opened or written
    └── AttributeValidationError          (also a ValueError) bad input; nothing was sent

A service error whose code is not in the table above is still a :class:`CognitoError`, with its
code kept in ``.code``. Messages never contain access tokens, attribute values or client
metadata: the transport scrubs the service's message of every secret the request carried.

This module imports nothing else of aiocognito's.
"""

from __future__ import annotations

__all__ = [
    "AiocognitoError",
    "AliasExistsError",
    "AttributeValidationError",
    "ClientClosedError",
    "CodeDeliveryFailureError",
    "CodeMismatchError",
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
    "NotAuthorizedError",
    "OperationNotEnabledError",
    "PasswordResetRequiredError",
    "QuotaDeadlineError",
    "ResourceNotFoundError",
    "TooManyRequestsError",
    "TransportError",
    "UnexpectedLambdaError",
    "UserLambdaValidationError",
    "UserNotConfirmedError",
    "UserNotFoundError",
    "error_class_for_code",
    "error_code",
]


class AiocognitoError(Exception):
    """Base class of every error aiocognito raises on purpose."""


class CognitoError(AiocognitoError):
    """Cognito answered a request with an error.

    Attributes:
        code: The service's error code, e.g. ``"InvalidParameterException"``.
        message: The service's message, scrubbed of the request's secrets.
        operation: The operation that failed, e.g. ``"UpdateUserAttributes"``.
        request_id: The service's request id, when it sent one; quote it to AWS support.
        status: The HTTP status of the answer, when there was one.
    """

    #: The code this class stands for; ``None`` on the base class.
    default_code: str | None = None

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        operation: str = "",
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        self.code: str = code or self.default_code or "Unknown"
        self.message = message
        self.operation = operation
        self.request_id = request_id
        self.status = status
        super().__init__(self._render())

    def _render(self) -> str:
        where = f" in {self.operation}" if self.operation else ""
        text = f"{self.code}{where}: {self.message}" if self.message else f"{self.code}{where}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"operation={self.operation!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the keyword-only fields when the error is pickled (e.g. across processes).
        return (
            _rebuild_cognito_error,
            (type(self), self.message, self.code, self.operation, self.request_id, self.status),
        )


def _rebuild_cognito_error(
    cls: type[CognitoError],
    message: str,
    code: str,
    operation: str,
    request_id: str | None,
    status: int | None,
) -> CognitoError:
    return cls(message, code=code, operation=operation, request_id=request_id, status=status)


class AliasExistsError(CognitoError):
    """Another user already uses the email or phone number as an alias or username."""

    default_code = "AliasExistsException"


class CodeDeliveryFailureError(CognitoError):
    """Cognito could not deliver the verification code."""

    default_code = "CodeDeliveryFailureException"


class CodeMismatchError(CognitoError):
    """The verification code was wrong."""

    default_code = "CodeMismatchException"


class ExpiredCodeError(CognitoError):
    """The verification code has expired."""

    default_code = "ExpiredCodeException"


class ForbiddenError(CognitoError):
    """AWS WAF blocked the request."""

    default_code = "ForbiddenException"


class InternalErrorError(CognitoError):
    """Cognito failed internally (HTTP 5xx)."""

    default_code = "InternalErrorException"


class InvalidEmailRoleAccessPolicyError(CognitoError):
    """Cognito may not use the pool's email identity."""

    default_code = "InvalidEmailRoleAccessPolicyException"


class InvalidLambdaResponseError(CognitoError):
    """A Lambda trigger answered with something Cognito could not use."""

    default_code = "InvalidLambdaResponseException"


class InvalidParameterError(CognitoError):
    """A parameter was invalid, e.g. an unknown or immutable attribute."""

    default_code = "InvalidParameterException"


class InvalidSmsRoleAccessPolicyError(CognitoError):
    """The pool's SMS role may not publish."""

    default_code = "InvalidSmsRoleAccessPolicyException"


class InvalidSmsRoleTrustRelationshipError(CognitoError):
    """The pool's SMS role does not trust Cognito."""

    default_code = "InvalidSmsRoleTrustRelationshipException"


class LimitExceededError(CognitoError):
    """A per-user attempt limit was hit (e.g. verification codes); wait minutes, not seconds."""

    default_code = "LimitExceededException"


class NotAuthorizedError(CognitoError):
    """The token is expired, revoked or lacks permission, or the attribute is not writable."""

    default_code = "NotAuthorizedException"


class OperationNotEnabledError(CognitoError):
    """The operation is not enabled here, e.g. in a replica region."""

    default_code = "OperationNotEnabledException"


class PasswordResetRequiredError(CognitoError):
    """The user must reset their password first."""

    default_code = "PasswordResetRequiredException"


class ResourceNotFoundError(CognitoError):
    """The user pool (or another resource) does not exist."""

    default_code = "ResourceNotFoundException"


class TooManyRequestsError(CognitoError):
    """The request was throttled: the account's request-rate quota was exceeded."""

    default_code = "TooManyRequestsException"


class QuotaDeadlineError(TooManyRequestsError):
    """The call's deadline would pass while it waited for quota, so it was never sent.

    Raised by aiocognito's rate limiter, not by Cognito: ``.status`` is None and nothing was
    applied. A per-call request fails fast this way rather than waiting past its deadline.
    """


class UnexpectedLambdaError(CognitoError):
    """A Lambda trigger failed unexpectedly."""

    default_code = "UnexpectedLambdaException"


class UserLambdaValidationError(CognitoError):
    """A Lambda trigger rejected the change."""

    default_code = "UserLambdaValidationException"


class UserNotConfirmedError(CognitoError):
    """The user has not confirmed their account."""

    default_code = "UserNotConfirmedException"


class UserNotFoundError(CognitoError):
    """The user does not exist."""

    default_code = "UserNotFoundException"


class TransportError(AiocognitoError):
    """No answer came back: the connection failed, was reset, or timed out.

    Whether the request was applied is unknown: a reset after the server applied it looks the
    same as one before.
    """


class DeadlineExceededError(TransportError):
    """The call's deadline (``RetryPolicy.deadline`` or ``timeout=``) passed before an answer.

    As with any lost answer, the last attempt may still have been applied.
    """


class ClientClosedError(AiocognitoError, RuntimeError):
    """The client was closed before the call could finish, or before it was made.

    A call still queued when :meth:`CognitoClient.aclose` ran was never sent and took no quota.
    One already on the wire may have been applied: ``.sent`` says which.

    Attributes:
        sent: Whether any attempt of the call had been sent.
    """

    def __init__(self, message: str = "the CognitoClient is closed", *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class CredentialsError(AiocognitoError):
    """An admin (SigV4-signed) operation was called, but no AWS credentials were found."""


class ConfigurationError(AiocognitoError):
    """The client cannot be set up as configured, e.g. no AWS region could be found."""


class JournalMismatchError(AiocognitoError):
    """A bulk journal was written for a different input; resuming against this one is refused."""


class JournalLockedError(AiocognitoError):
    """Another run holds the bulk journal; this run is refused before doing anything.

    Attributes:
        path: The journal file.
        pid: The process id of the run that holds it, when it could be read.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        super().__init__(path, pid)
        self.path = path
        self.pid = pid

    def __str__(self) -> str:
        holder = f"process {self.pid}" if self.pid is not None else "another process"
        return (
            f"journal {self.path} is in use by another run ({holder}); wait for it to finish, "
            "or give this run another journal"
        )


class JournalWriteError(AiocognitoError):
    """The bulk journal cannot be opened, read or written (read-only, disk full, locked).

    The run stops: rows applied from then on are reported but not journaled, so a resume sends
    them again.

    Attributes:
        path: The journal file.
        cause: What went wrong, as SQLite or the operating system put it.
    """

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(path, cause)
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        return f"cannot use the journal {self.path}: {self.cause}"


class AttributeValidationError(AiocognitoError, ValueError):
    """Input failed validation before any request was sent.

    The message names the argument or attribute and the limit it broke, never the value.
    """


_BY_CODE: dict[str, type[CognitoError]] = {
    cls.default_code: cls
    for cls in (
        AliasExistsError,
        CodeDeliveryFailureError,
        CodeMismatchError,
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
        ResourceNotFoundError,
        TooManyRequestsError,
        UnexpectedLambdaError,
        UserLambdaValidationError,
        UserNotConfirmedError,
        UserNotFoundError,
    )
    if cls.default_code is not None
}


def error_class_for_code(code: str) -> type[CognitoError]:
    """Return the most specific :class:`CognitoError` subclass for a service error code."""
    return _BY_CODE.get(code, CognitoError)


def error_code(error: BaseException) -> str:
    """How an error is counted and reported: Cognito's code, else the exception's class name.

    botocore's own ``ClientError`` (seen only by code comparing against raw aiobotocore) is
    read by its ``Error.Code``. Messages are never used: they may name the input.
    """
    code = getattr(error, "code", None)
    if not isinstance(code, str):
        response = getattr(error, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code or type(error).__name__)
