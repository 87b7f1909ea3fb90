"""The installed distribution's version, which `ledger-server --version` and `ledgerctl --version` print."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "usage-ledger"


def package_version() -> str:
    """The version pip installed (pyproject.toml's); a source tree run without installing has none to report."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"
