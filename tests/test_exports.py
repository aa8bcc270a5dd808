"""The public namespace is honest: __all__ is sorted, complete, and every name resolves."""

from __future__ import annotations

import importlib.resources
import inspect

import aiocognito


def test_all_is_unique() -> None:
    # Its order is ruff's RUF022 (isort-style), checked by `make test`'s lint step.
    assert len(set(aiocognito.__all__)) == len(aiocognito.__all__)


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(aiocognito).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(aiocognito.__all__) - {"__version__"}


def test_exported_objects_claim_the_public_module() -> None:
    for name in aiocognito.__all__:
        obj = getattr(aiocognito, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "aiocognito", name
            assert obj.__doc__, f"{name} needs a docstring"
    assert repr(aiocognito.TooManyRequestsError).startswith("<class 'aiocognito.TooMany")


def test_public_errors_pickle_through_the_public_namespace() -> None:
    import pickle

    error = aiocognito.AliasExistsError("taken", operation="AdminUpdateUserAttributes", status=400)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is aiocognito.AliasExistsError
    assert (again.code, again.message, again.status) == (error.code, error.message, 400)
    closed = pickle.loads(pickle.dumps(aiocognito.ClientClosedError("closed", sent=True)))
    assert isinstance(closed, aiocognito.ClientClosedError)


def test_package_is_typed() -> None:
    assert importlib.resources.files("aiocognito").joinpath("py.typed").is_file()


def test_the_command_line_loads_no_fake_until_asked() -> None:
    """``aiocognito update`` must not pay for the fake (and aiohttp's web server) at import."""
    import subprocess
    import sys

    code = (
        "import sys, aiocognito.cli; prefixes = ('aiocognito.testing', 'aiohttp.web'); "
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
