"""ledgerctl's global options, accepted before or after the subcommand (docs/cli.md, "Global options").

`--target`, `--api-key` and `--tls-*` are how every command reaches the server; each is also an environment
variable (LEDGER_TARGET, LEDGER_API_KEY, LEDGER_TLS_*), which is how the commands read them. `--json` is every
command's own flag. So before Typer parses anything, the global options are lifted out of wherever they were typed:
a connection option becomes its environment variable for this process, and `--json` moves to the end of the
command line, where the subcommand that owns it is sure to see it.
"""

from __future__ import annotations

import os

CONNECTION_OPTIONS = {
    "--target": "LEDGER_TARGET",
    "--api-key": "LEDGER_API_KEY",
    "--tls-ca": "LEDGER_TLS_CA",
    "--tls-cert": "LEDGER_TLS_CERT",
    "--tls-key": "LEDGER_TLS_KEY",
}
JSON_FLAG = "--json"


class MissingValue(ValueError):
    """A connection option typed last, with no value after it."""


def lift_global_options(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """`argv` without its global options, which are set in `environ` (connection) or appended (`--json`).

    Arguments after `--` are left alone (they are values, not options). The last of a repeated option wins, as
    Typer would have it. Raises MissingValue for a connection option with nothing after it.
    """
    kept: list[str] = []
    wants_json = False
    index = 0
    while index < len(argv):
        argument = argv[index]
        if argument == "--":
            kept.extend(argv[index:])
            break
        name, equals, value = argument.partition("=")
        if name in CONNECTION_OPTIONS:
            if not equals:
                if index + 1 >= len(argv):
                    raise MissingValue(f"{name} needs a value")
                index += 1
                value = argv[index]
            environ[CONNECTION_OPTIONS[name]] = value
        elif argument == JSON_FLAG:
            wants_json = True
        else:
            kept.append(argument)
        index += 1
    if wants_json:
        if "--" in kept:
            kept.insert(kept.index("--"), JSON_FLAG)
        else:
            kept.append(JSON_FLAG)
    return kept
