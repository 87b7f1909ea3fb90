"""Private files (TLS keys) read by the server and the client alike, with a warning when others may read them."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("usageledger.tls")


def read_private_file(path: str | Path, what: str) -> bytes:
    """Read a private key (TLS key, checkpoint signing key); warn when group or others may access the file.

    The warning names the file and its mode, never its content. OSError (missing, unreadable) propagates.
    """
    with open(path, "rb") as file:
        mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)  # the mode of the file read, not of a later one
        data = file.read()
    if mode & 0o077 and os.name == "posix":
        log.warning(
            "%s %s is accessible by group or others (mode %04o); it should be readable by its owner only: chmod 600 %s",
            what,
            path,
            mode,
            path,
        )
    return data
