"""Signed tree heads: C2SP tlog-checkpoint bodies in C2SP signed notes with Ed25519 keys, and key-file helpers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import VerificationError
from ledger.log.merkle import HASH_SIZE, MAX_TREE_SIZE

__all__ = [
    "Checkpoint",
    "NoteSigner",
    "NoteVerifier",
    "generate_signer_key",
    "open_checkpoint",
    "read_private_key_file",
    "sign_checkpoint",
    "write_private_key_file",
]

# C2SP signed-note algorithm byte for Ed25519; it is also hashed into the key ID so IDs differ across
# algorithms even for equal key bytes.
_ALG_ED25519 = 0x01
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_KEY_ID_SIZE = 4
_SIG_LINE_PREFIX = "\u2014 "  # em dash, then a space
_PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL_CHAR = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _b64decode(what: str, value: str) -> bytes:
    """Strict standard base64: padded, no stray characters, and canonical, so one value has one spelling."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as err:
        raise VerificationError(f"{what}: not standard base64") from err
    if base64.b64encode(raw).decode("ascii") != value:
        raise VerificationError(f"{what}: not canonical standard base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_text_chars(what: str, text: str) -> None:
    # Signed notes are UTF-8 with no control characters but newline, so what a human reads is what was signed.
    bad = _CONTROL_CHAR.search(text)
    if bad:
        raise VerificationError(f"{what}: contains control character U+{ord(bad.group()):04X}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise VerificationError(f"{what}: not valid UTF-8") from err


def _check_key_name(what: str, name: str) -> None:
    # '+' separates the fields of a key string and a space those of a signature line.
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise VerificationError(f"{what}: key name {name!r} must be non-empty, without whitespace or '+'")
    _check_text_chars(f"{what}: key name {name!r}", name)


def _key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([_ALG_ED25519]) + public_key).digest()[:_KEY_ID_SIZE]


def _parse_key_material(what: str, name: str, key_id_hex: str, key_b64: str) -> tuple[bytes, bytes]:
    """Check the name and return (key id, 32 key bytes) from the `+`-separated parts of a key string."""
    _check_key_name(what, name)
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise VerificationError(f"{what}: key id {key_id_hex!r} is not 8 hex digits")
    raw = _b64decode(what, key_b64)
    if len(raw) != 1 + _ED25519_KEY_SIZE or raw[0] != _ALG_ED25519:
        raise VerificationError(f"{what}: key is not an Ed25519 key (algorithm 0x01 and 32 bytes)")
    return bytes.fromhex(key_id_hex), raw[1:]


def _verifier_key_string(name: str, key_id: bytes, public_key: bytes) -> str:
    return f"{name}+{key_id.hex()}+{_b64encode(bytes([_ALG_ED25519]) + public_key)}"


class NoteSigner:
    """Signs notes with an Ed25519 key given as `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`."""

    def __init__(self, signer_key: str) -> None:
        if not signer_key.startswith(_PRIVATE_KEY_PREFIX):
            raise VerificationError("signer key: does not start with PRIVATE+KEY+")
        # At most two splits: the base64 key may itself contain '+', names and key ids never do.
        parts = signer_key[len(_PRIVATE_KEY_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise VerificationError("signer key: want PRIVATE+KEY+<name>+<key id>+<key>")
        name, key_id_hex, key_b64 = parts
        key_id, seed = _parse_key_material("signer key", name, key_id_hex, key_b64)
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._private.public_key().public_bytes_raw()
        if _key_id(name, public) != key_id:
            raise VerificationError(f"signer key {name!r}: key id {key_id_hex} does not match the key")
        self._name = name
        self._key_id = key_id
        self._verifier_key = _verifier_key_string(name, key_id, public)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def verifier_key(self) -> str:
        """The public `<name>+<key id>+<key>` string to hand to verifiers."""
        return self._verifier_key

    def sign(self, text: str) -> str:
        """The whole signed note: text, a blank line, and this key's signature line."""
        if not text.endswith("\n"):
            raise VerificationError("note text: must end with a newline")
        _check_text_chars("note text", text)
        signature = self._private.sign(text.encode("utf-8"))
        return f"{text}\n{_SIG_LINE_PREFIX}{self._name} {_b64encode(self._key_id + signature)}\n"

    def __repr__(self) -> str:
        # Never print the private key, e.g. in tracebacks or logs.
        return f"NoteSigner({self._verifier_key!r})"


class NoteVerifier:
    """Verifies notes signed by one Ed25519 key given as `<name>+<key id hex>+<base64(0x01 || public key)>`."""

    def __init__(self, verifier_key: str) -> None:
        # At most two splits: the base64 key may itself contain '+', names and key ids never do.
        parts = verifier_key.split("+", 2)
        if len(parts) != 3:
            raise VerificationError("verifier key: want <name>+<key id>+<key>")
        name, key_id_hex, key_b64 = parts
        key_id, public = _parse_key_material("verifier key", name, key_id_hex, key_b64)
        if _key_id(name, public) != key_id:
            raise VerificationError(f"verifier key {name!r}: key id {key_id_hex} does not match the key")
        self._name = name
        self._key_id = key_id
        self._public = Ed25519PublicKey.from_public_bytes(public)
        self._verifier_key = _verifier_key_string(name, key_id, public)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def verifier_key(self) -> str:
        return self._verifier_key

    def verify(self, note: str) -> str:
        """Return the note's text if this key signed it; signatures by other keys are ignored, per the spec."""
        text, signatures = _split_note(note)
        verified = False
        for name, key_id, signature in signatures:
            if name != self._name or key_id != self._key_id:
                continue
            if len(signature) != _ED25519_SIG_SIZE:
                raise VerificationError(
                    f"signed note: signature by key {self._name!r} is {len(signature)} bytes, "
                    f"expected {_ED25519_SIG_SIZE}"
                )
            try:
                self._public.verify(signature, text.encode("utf-8"))
            except InvalidSignature as err:
                raise VerificationError(
                    f"signed note: signature by key {self._name!r} ({self._key_id.hex()}) does not verify"
                ) from err
            verified = True
        if not verified:
            names = ", ".join(sorted({f"{n}+{k.hex()}" for n, k, _ in signatures}))
            raise VerificationError(
                f"signed note: no signature by key {self._name}+{self._key_id.hex()} (signed by: {names or 'nobody'})"
            )
        return text

    def __repr__(self) -> str:
        return f"NoteVerifier({self._verifier_key!r})"


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and (key name, key id, signature) triples, rejecting bad structure."""
    _check_text_chars("signed note", note)
    # The signature block starts after the last blank line; signature lines never contain a blank line.
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError("signed note: no blank line between text and signatures")
    text = note[: split + 1]
    block = note[split + 2 :]
    if not block.endswith("\n"):
        raise VerificationError("signed note: signature block does not end with a newline")
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(_SIG_LINE_PREFIX):
            raise VerificationError(f"signed note: signature line {line!r} does not start with an em dash")
        fields = line[len(_SIG_LINE_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise VerificationError(f"signed note: signature line {line!r} is not '\u2014 <name> <base64>'")
        name, sig_b64 = fields
        _check_key_name("signed note: signature line", name)
        raw = _b64decode("signed note: signature", sig_b64)
        if len(raw) <= _KEY_ID_SIZE:
            raise VerificationError(f"signed note: signature by {name!r} is too short to hold a key id")
        signatures.append((name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]))
    return text, signatures


def generate_signer_key(name: str) -> str:
    """A new Ed25519 signer key string for `name`; pass it to NoteSigner and publish `.verifier_key`."""
    _check_key_name("signer key", name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    key_id = _key_id(name, private.public_key().public_bytes_raw())
    return f"{_PRIVATE_KEY_PREFIX}{name}+{key_id.hex()}+{_b64encode(bytes([_ALG_ED25519]) + seed)}"


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: which log (origin), how many entries (size), and their Merkle root."""

    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not self.origin or any(ch.isspace() for ch in self.origin) or "+" in self.origin:
            raise VerificationError(f"checkpoint: origin {self.origin!r} must be non-empty, without whitespace or '+'")
        _check_text_chars("checkpoint: origin", self.origin)
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise VerificationError(f"checkpoint: size {self.size} is outside 0..{MAX_TREE_SIZE}")
        if len(self.root_hash) != HASH_SIZE:
            raise VerificationError(f"checkpoint: root hash is {len(self.root_hash)} bytes, expected {HASH_SIZE}")

    def to_text(self) -> str:
        return f"{self.origin}\n{self.size}\n{_b64encode(self.root_hash)}\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body; strict, so that one checkpoint has exactly one text and one signature."""
        if not text.endswith("\n"):
            raise VerificationError("checkpoint: text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError(f"checkpoint: has {len(lines)} lines, expected origin, size and root hash")
        if len(lines) > 3:
            # The format allows extension lines, but this ledger never writes them; one reading them would
            # be silently dropping signed content.
            raise VerificationError(f"checkpoint: has {len(lines) - 3} unexpected extension lines")
        origin, size_text, root_b64 = lines
        if not _DECIMAL.fullmatch(size_text):
            raise VerificationError(f"checkpoint: size {size_text!r} is not a decimal without leading zeros")
        return cls(origin, int(size_text), _b64decode("checkpoint: root hash", root_b64))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The checkpoint as a signed note."""
    return signer.sign(checkpoint.to_text())


def open_checkpoint(note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and parse it; with `origin`, also require it to be that log's."""
    checkpoint = Checkpoint.from_text(verifier.verify(note))
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(f"checkpoint: origin {checkpoint.origin!r} does not match expected origin {origin!r}")
    return checkpoint


def write_private_key_file(path: str | os.PathLike[str], signer_key_str: str) -> None:
    """Write a signer key to a new file only its owner can read; raises FileExistsError rather than overwrite."""
    NoteSigner(signer_key_str)  # refuse to write something that will not load back
    created = False
    try:
        with open(path, "x", encoding="utf-8", opener=_create_owner_only) as f:
            created = True
            f.write(signer_key_str + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        # Only once our own exclusive create succeeded, so this never removes someone else's file.
        if created:
            Path(path).unlink(missing_ok=True)
        raise


def _create_owner_only(path: str, flags: int) -> int:
    # O_CREAT | O_EXCL with mode 0600 in the one call: the file never exists with looser permissions, not
    # even briefly, and an existing file (or a symlink planted in its place) is never opened.
    return os.open(path, flags | os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def read_private_key_file(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Read a signer key file; returns the key and a warning when others may read or write the file."""
    with open(path, encoding="utf-8") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        content = f.read()
    key = content[:-1] if content.endswith("\n") else content
    try:
        NoteSigner(key)
    except VerificationError as err:
        raise VerificationError(f"private key file {os.fspath(path)}: {err}") from err
    warning = None
    if os.name == "posix" and mode & 0o077:
        warning = (
            f"private key file {os.fspath(path)} has mode {mode:04o}, so others on this machine may read the "
            f"signing key; run: chmod 600 {os.fspath(path)}"
        )
    return key, warning
