"""Frozen configuration: how hard to drive Cognito and how to retry. Validation only, no I/O."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from attrs import field, frozen, validators

__all__ = ["Limits", "RetryPolicy"]

_positive_int = [validators.instance_of(int), validators.ge(1)]


def _optional_positive_rate(_inst: object, attribute: object, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        name = getattr(attribute, "name", "rate")
        raise ValueError(f"{name} must be a positive number of requests per second or None")


#: Where a shared quota may live: Redis over TCP, over TLS, or on a Unix socket; or, for the
#: processes of one host, files in a directory.
SHARED_QUOTA_SCHEMES = ("redis", "rediss", "unix", "file")
_SCHEMES_TEXT = "a redis://, rediss://, unix:// or file:// URL"


def _check_shared_quota_url(_inst: object, _attribute: object, value: str | None) -> None:
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise TypeError(f"shared_quota_url must be a string ({_SCHEMES_TEXT})")
    scheme = urlsplit(value).scheme
    if scheme not in SHARED_QUOTA_SCHEMES:
        kind = scheme or "bare"
        raise ValueError(f"shared_quota_url must be {_SCHEMES_TEXT}, not a {kind} one")
    if scheme == "file":
        quota_directory(value)


def is_file_url(url: str) -> bool:
    """Whether a shared quota URL names a directory on this host (``file://``)."""
    return urlsplit(url).scheme == "file"


def quota_directory(url: str) -> Path:
    """The directory a ``file://`` shared quota URL names (``file:///run/aiocognito``)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            "shared_quota_url: a file:// quota is shared by the processes of one host; "
            f"give a directory, not a host ({parts.netloc!r}): file:///path/to/directory"
        )
    if parts.query or parts.fragment:
        raise ValueError("shared_quota_url: a file:// quota takes no query or fragment")
    if "%2f" in parts.path.lower() or "%00" in parts.path:
        raise ValueError("shared_quota_url: a file:// path may not encode '/' or NUL")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(
            "shared_quota_url: a file:// quota needs an absolute directory: file:///path"
        )
    if path.rstrip("/") == "":
        raise ValueError("shared_quota_url: a file:// quota needs a directory of its own, not /")
    return Path(path)


def redact_url(url: str | None) -> str | None:
    """``url`` with its password masked as ``***``: safe for reprs and logs.

    Works on the text, not a parse, so that a malformed URL or a password holding ``#``, ``?``
    or ``/`` is masked too: everything between ``://`` and the last ``@`` but a user name, and
    any ``password=`` query parameter (redis-py reads one).
    """
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, _at, host = rest.rpartition("@")
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        rest = f"{user}:***@{host}"
    masked = f"{scheme}{sep}{rest}"
    return re.sub(r"(?i)([?&;]password=)[^&;#]*", r"\1***", masked)


def _hide_password(url: str | None) -> str:
    return repr(redact_url(url))


@frozen(kw_only=True)
class Limits:
    """How much traffic the client may put on Cognito.

    Cognito's quotas are per AWS account and region, shared by every pool and every caller.
    UserUpdate (the attribute writes and deletes) allows 25 requests/s and cannot be raised;
    UserRead (GetUser, AdminGetUser) allows 120 requests/s.

    Attributes:
        max_concurrency: Calls in flight at once, across all operations. The HTTP connection
            pool is sized to match.
        user_update_rps: The UserUpdate quota in requests/s; ``None`` means unknown.
        user_read_rps: The UserRead quota in requests/s; ``None`` means unknown.
        adaptive: Cut the rate when throttled and climb back (never above the configured
            quota); with a quota of ``None``, discover it. When off, a quota of ``None``
            means no limit at all.
        quota_group: Which clients share one set of quota buckets. Clients on one event loop
            with the same group share; by default the group is the region and endpoint, so
            clients for two AWS accounts in one process (or sharing one Redis) must each name
            theirs. ``"account"`` derives it from the credentials' AWS account id (one STS
            GetCallerIdentity call when the client opens) plus the region.
        shared_quota_url: A Redis URL (``redis://host:6379/0``, ``rediss://`` for TLS, or
            ``unix:///path/redis.sock``) that turns on the fleet mode: every process and host
            with the same URL and quota group draws from one bucket per category there, and
            adapts to throttling together. Needs the ``aiocognito[redis]`` extra. Or a
            directory, ``file:///run/aiocognito``: the same, for the processes of one host
            and one user (a web server's workers), with no server to run and no extra
            (POSIX only); the directory is created ``0700`` if missing. ``None``
            reads the ``AIOCOGNITO_SHARED_QUOTA_URL`` environment variable when the client
            opens; ``""`` turns the fleet mode off even if that is set. If Redis fails, calls
            go on under the process's own limiter (see ``statistics().categories``).
        share_on_host: With no ``shared_quota_url`` in effect, share the quota with this
            user's other processes on this host that use the same quota group (a web server's
            workers, a migration beside them), through a private directory in the temporary
            directory (``aiocognito-<uid>``). A process paces alone, with no file I/O, while
            no other process uses the quota, and draws from the shared bucket while one does.
            ``None`` (the default) means on, unless the ``AIOCOGNITO_SHARE_ON_HOST``
            environment variable is ``0``, ``false``, ``no`` or ``off``; ``False`` turns it
            off. POSIX only; elsewhere, or if the directory cannot be used or is not this
            user's alone (a WARNING), each process paces alone.
    """

    max_concurrency: int = field(default=64, validator=_positive_int)
    user_update_rps: float | None = field(default=25.0, validator=_optional_positive_rate)
    user_read_rps: float | None = field(default=120.0, validator=_optional_positive_rate)
    adaptive: bool = True
    quota_group: str | None = None
    shared_quota_url: str | None = field(
        default=None, validator=_check_shared_quota_url, repr=_hide_password
    )
    share_on_host: bool | None = field(
        default=None, validator=validators.optional(validators.instance_of(bool))
    )


@frozen(kw_only=True)
class RetryPolicy:
    """Which failures are retried, how often, and how long a call may take in all.

    Throttles, 5xx answers and connection failures are retried with exponential backoff and
    full jitter. Permanent errors (bad parameters, unknown users, expired tokens) never are.

    Attributes:
        max_attempts: Attempts per call, the first included.
        deadline: Seconds a call may take across all its attempts; ``None`` for no limit.
        backoff_base: Seconds of the first backoff ceiling; it doubles per attempt.
        backoff_cap: The largest backoff, in seconds.
        retry_limit_exceeded: Retry ``LimitExceededException`` (a per-user attempt limit),
            slowly; off by default because retrying can prolong the lockout.
        limit_exceeded_backoff: Seconds to wait before retrying ``LimitExceededException``.
    """

    max_attempts: int = field(default=8, validator=_positive_int)
    deadline: float | None = field(default=300.0)
    backoff_base: float = field(default=0.1, validator=validators.gt(0))
    backoff_cap: float = field(default=20.0, validator=validators.gt(0))
    retry_limit_exceeded: bool = False
    limit_exceeded_backoff: float = field(default=300.0, validator=validators.gt(0))

    @deadline.validator
    def _check_deadline(self, _attribute: object, value: float | None) -> None:
        if value is not None and not value > 0:
            raise ValueError("deadline must be a positive number of seconds or None")
