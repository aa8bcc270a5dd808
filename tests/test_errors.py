"""The error tree: one subclass per Cognito error code, codes kept, nothing secret in messages."""

from __future__ import annotations

import pickle

import pytest

import aiocognito
from aiocognito._errors import error_class_for_code

# The error table of the Cognito facts: every code any of the eight operations can return.
CODES = [
    "AliasExistsException",
    "CodeDeliveryFailureException",
    "CodeMismatchException",
    "ExpiredCodeException",
    "ForbiddenException",
    "InternalErrorException",
    "InvalidEmailRoleAccessPolicyException",
    "InvalidLambdaResponseException",
    "InvalidParameterException",
    "InvalidSmsRoleAccessPolicyException",
    "InvalidSmsRoleTrustRelationshipException",
    "LimitExceededException",
    "NotAuthorizedException",
    "OperationNotEnabledException",
    "PasswordResetRequiredException",
    "ResourceNotFoundException",
    "TooManyRequestsException",
    "UnexpectedLambdaException",
    "UserLambdaValidationException",
    "UserNotConfirmedException",
    "UserNotFoundException",
]


@pytest.mark.parametrize("code", CODES)
def test_each_code_has_its_exported_subclass(code: str) -> None:
    cls = getattr(aiocognito, code.removesuffix("Exception") + "Error")
    assert error_class_for_code(code) is cls
    assert issubclass(cls, aiocognito.CognitoError)
    err = cls("boom", operation="UpdateUserAttributes", request_id="r-1")
    assert err.code == code
    assert isinstance(err, aiocognito.AiocognitoError)


def test_unknown_code_is_kept_on_the_base_class() -> None:
    assert error_class_for_code("BrandNewException") is aiocognito.CognitoError
    err = aiocognito.CognitoError("new", code="BrandNewException", operation="GetUser")
    assert err.code == "BrandNewException"
    assert type(err) is aiocognito.CognitoError


def test_str_names_code_operation_and_request_id() -> None:
    err = aiocognito.InvalidParameterError(
        "user.custom:x: Attribute does not exist in the schema.",
        operation="AdminUpdateUserAttributes",
        request_id="abc-123",
        status=400,
    )
    text = str(err)
    assert "InvalidParameterException" in text
    assert "AdminUpdateUserAttributes" in text
    assert "abc-123" in text
    assert "does not exist in the schema" in text
    assert "InvalidParameterError(code='InvalidParameterException'" in repr(err)


def test_errors_survive_pickling_with_their_fields() -> None:
    err = aiocognito.TooManyRequestsError(
        "Rate exceeded", operation="GetUser", request_id="r", status=400
    )
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is aiocognito.TooManyRequestsError
    assert (copy.code, copy.message, copy.operation, copy.request_id, copy.status) == (
        "TooManyRequestsException",
        "Rate exceeded",
        "GetUser",
        "r",
        400,
    )


def test_tree_shape() -> None:
    assert issubclass(aiocognito.AttributeValidationError, ValueError)
    assert issubclass(aiocognito.AttributeValidationError, aiocognito.AiocognitoError)
    assert issubclass(aiocognito.TransportError, aiocognito.AiocognitoError)
    assert issubclass(aiocognito.DeadlineExceededError, aiocognito.TransportError)
    assert issubclass(aiocognito.CredentialsError, aiocognito.AiocognitoError)
    assert not issubclass(aiocognito.TransportError, aiocognito.CognitoError)
    doc = aiocognito._errors.__doc__ or ""
    for name in aiocognito.__all__:
        obj = getattr(aiocognito, name)
        if isinstance(obj, type) and issubclass(obj, aiocognito.AiocognitoError):
            assert name in doc, f"{name} is missing from the drawn tree"
