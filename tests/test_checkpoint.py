"""Tests for checkpoints and C2SP signed notes: the spec's example, round trips, rejections and key files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import VerificationError
from ledger.log.merkle import EMPTY_ROOT, leaf_hash
from ledger.log.note import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    generate_signer_key,
    open_checkpoint,
    read_private_key_file,
    sign_checkpoint,
    write_private_key_file,
)

TESTDATA = Path(__file__).resolve().parent / "data"
EXAMPLE = json.loads((TESTDATA / "c2sp-signed-note-example.json").read_text())

ORIGIN = "ledger.example.com/org/acme"
ROOT = leaf_hash(b"root")


def _key_from_seed(name: str, seed: bytes) -> str:
    """A signer key string built independently of the module, to pin down the key id and encoding."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    key_b64 = base64.b64encode(b"\x01" + seed).decode()
    return f"PRIVATE+KEY+{name}+{key_id.hex()}+{key_b64}"


SIGNER = NoteSigner(_key_from_seed(ORIGIN, bytes(range(32))))
VERIFIER = NoteVerifier(SIGNER.verifier_key)
OTHER_SIGNER = NoteSigner(_key_from_seed("other.example.com/log", bytes(range(1, 33))))


# --- the C2SP example -----------------------------------------------------------------------------------------


def test_example_verifier_key_parses_with_its_key_id() -> None:
    verifier = NoteVerifier(EXAMPLE["verifier_key"])
    assert verifier.name == "example.com/foo"
    assert verifier.key_id == bytes.fromhex("530d903a")
    public = base64.b64decode(EXAMPLE["verifier_key"].split("+", 2)[2])[1:]
    assert hashlib.sha256(b"example.com/foo\n\x01" + public).digest()[:4] == verifier.key_id
    assert verifier.verifier_key == EXAMPLE["verifier_key"]


def test_example_note_verifies() -> None:
    assert NoteVerifier(EXAMPLE["verifier_key"]).verify(EXAMPLE["signed_note"]) == EXAMPLE["note_text"]


def _flip_text_bit(note: str, position: int) -> str:
    raw = bytearray(note.encode())
    raw[position] ^= 0x01
    return raw.decode()


def test_example_note_with_a_flipped_text_byte_fails() -> None:
    verifier = NoteVerifier(EXAMPLE["verifier_key"])
    for position in range(len(EXAMPLE["note_text"].encode())):
        with pytest.raises(VerificationError):
            verifier.verify(_flip_text_bit(EXAMPLE["signed_note"], position))


def test_example_note_with_a_flipped_signature_byte_fails() -> None:
    verifier = NoteVerifier(EXAMPLE["verifier_key"])
    text, _, line = EXAMPLE["signed_note"].rpartition("\n\n")
    name, sig_b64 = line.removeprefix("— ").removesuffix("\n").split(" ")
    raw = base64.b64decode(sig_b64)
    for position in range(len(raw)):
        flipped = bytearray(raw)
        flipped[position] ^= 0x80
        note = f"{text}\n\n— {name} {base64.b64encode(bytes(flipped)).decode()}\n"
        # A flip in the key id makes it an unknown key's signature, which leaves no signature by ours.
        expected = "does not verify" if position >= 4 else "no signature by key"
        with pytest.raises(VerificationError, match=expected):
            verifier.verify(note)


# --- keys -----------------------------------------------------------------------------------------------------


def test_generated_key_round_trips() -> None:
    key = generate_signer_key(ORIGIN)
    assert key.startswith(f"PRIVATE+KEY+{ORIGIN}+")
    signer = NoteSigner(key)
    verifier = NoteVerifier(signer.verifier_key)
    assert verifier.name == ORIGIN
    assert verifier.key_id == signer.key_id
    assert signer.verifier_key == f"{ORIGIN}+{signer.key_id.hex()}+{signer.verifier_key.split('+', 2)[2]}"
    assert verifier.verify(signer.sign("hello\n")) == "hello\n"


def test_keys_whose_base64_contains_plus_parse() -> None:
    # '+' separates key-string fields and is also a base64 digit, so the key part must not be split further.
    for i in range(1000):
        key = _key_from_seed("k", hashlib.sha256(i.to_bytes(4, "big")).digest())
        signer = NoteSigner(key)
        if "+" in key.split("+", 4)[4] and "+" in signer.verifier_key.split("+", 2)[2]:
            break
    else:
        pytest.fail("no seed gave base64 with '+' in both keys")
    assert NoteVerifier(signer.verifier_key).verify(signer.sign("x\n")) == "x\n"


def test_signer_repr_hides_private_key() -> None:
    assert "PRIVATE" not in repr(SIGNER)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("example.com/foo+530d903a", "want <name>"),
        ("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match the key"),
        ("example.com/foo+530d90+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "8 hex digits"),
        ("example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "not an Ed25519 key"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2", "base64"),
        ("example.com foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "without whitespace"),
        ("+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "non-empty"),
    ],
    ids=["too-few-fields", "wrong-key-id", "short-key-id", "wrong-algorithm", "bad-base64", "space-in-name", "no-name"],
)
def test_malformed_verifier_key_rejected(key: str, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        NoteVerifier(key)


def test_malformed_signer_key_rejected() -> None:
    good = _key_from_seed("k", bytes(32))
    with pytest.raises(VerificationError, match="PRIVATE"):
        NoteSigner(good.removeprefix("PRIVATE+"))
    with pytest.raises(VerificationError, match="does not match the key"):
        NoteSigner(good.replace(good.split("+")[3], "00000000"))
    with pytest.raises(VerificationError, match="without whitespace or '\\+'"):
        generate_signer_key("a b")


# --- notes ----------------------------------------------------------------------------------------------------


def test_signed_note_format() -> None:
    note = SIGNER.sign("line one\nline two\n")
    text, blank, sig_line = note.partition("\n\n")
    assert (text, blank) == ("line one\nline two", "\n\n")
    assert sig_line.startswith(f"\u2014 {ORIGIN} ")
    assert sig_line.endswith("\n")
    raw = base64.b64decode(sig_line.split(" ")[2])
    assert raw[:4] == SIGNER.key_id
    assert len(raw) == 4 + 64


def test_verifying_with_another_key_fails_clearly() -> None:
    note = SIGNER.sign("hello\n")
    with pytest.raises(
        VerificationError, match=f"no signature by key other.example.com/log\\+{OTHER_SIGNER.key_id.hex()}"
    ):
        NoteVerifier(OTHER_SIGNER.verifier_key).verify(note)


def test_signatures_by_unknown_keys_are_ignored() -> None:
    text = "cosigned\n"
    cosigned = SIGNER.sign(text) + OTHER_SIGNER.sign(text).rpartition("\n\n")[2]
    assert VERIFIER.verify(cosigned) == text
    assert NoteVerifier(OTHER_SIGNER.verifier_key).verify(cosigned) == text
    # Order does not matter either.
    other_first = OTHER_SIGNER.sign(text) + SIGNER.sign(text).rpartition("\n\n")[2]
    assert VERIFIER.verify(other_first) == text


def test_bad_signature_by_our_key_fails_even_next_to_a_good_one() -> None:
    good = SIGNER.sign("a\n")
    forged_line = SIGNER.sign("b\n").rpartition("\n\n")[2]
    with pytest.raises(VerificationError, match="does not verify"):
        VERIFIER.verify(good + forged_line)


_SIG = SIGNER.sign("text\n").rpartition("\n\n")[2]


@pytest.mark.parametrize(
    "note",
    [
        "text\n" + _SIG,  # no blank line
        "text\n\n",  # no signatures
        "text\n\n" + _SIG.removesuffix("\n"),  # last line unterminated
        "text\n\n" + _SIG.replace("\u2014", "-"),  # hyphen instead of em dash
        "text\n\n" + _SIG.replace("\u2014 ", "\u2014"),  # no space after the dash
        "text\n\n" + _SIG.replace(" ", "  ", 2),  # doubled space
        "text\n\n" + _SIG + "\n",  # trailing blank line
        "text\n\n" + _SIG.replace(ORIGIN, ORIGIN + " extra"),  # extra field
        "text\n\n" + _SIG[:-3] + "!\n",  # invalid base64
        "text\n\n\u2014 " + ORIGIN + " AAAA\n",  # too short for a key id
        "te\x07xt\n\n" + _SIG,  # control character in text
        "text\n\n" + _SIG.replace(ORIGIN, "a+b"),  # '+' in key name
        "text\r\n\n" + _SIG,  # carriage return
    ],
    ids=[
        "no-blank-line",
        "no-signatures",
        "unterminated",
        "hyphen",
        "no-space-after-dash",
        "double-space",
        "trailing-blank-line",
        "extra-field",
        "bad-base64",
        "short-signature",
        "control-char",
        "plus-in-name",
        "carriage-return",
    ],
)
def test_malformed_note_rejected(note: str) -> None:
    with pytest.raises(VerificationError, match=r"^signed note"):
        VERIFIER.verify(note)


def test_sign_rejects_text_that_cannot_be_a_note() -> None:
    with pytest.raises(VerificationError, match="newline"):
        SIGNER.sign("no newline")
    with pytest.raises(VerificationError, match="control character"):
        SIGNER.sign("bell\x07\n")


# --- checkpoints ----------------------------------------------------------------------------------------------


def test_checkpoint_text_format() -> None:
    checkpoint = Checkpoint(ORIGIN, 1234, EMPTY_ROOT)
    assert checkpoint.to_text() == f"{ORIGIN}\n1234\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    assert Checkpoint.from_text(checkpoint.to_text()) == checkpoint


def test_checkpoint_sign_and_open_round_trip() -> None:
    checkpoint = Checkpoint(ORIGIN, 42, ROOT)
    note = sign_checkpoint(checkpoint, SIGNER)
    assert note.startswith(checkpoint.to_text() + "\n\u2014 ")
    assert open_checkpoint(note, VERIFIER) == checkpoint
    assert open_checkpoint(note, VERIFIER, origin=ORIGIN) == checkpoint


def test_checkpoint_from_another_log_is_rejected() -> None:
    # The same key may sign for several logs; the origin is what ties a checkpoint to one of them.
    note = sign_checkpoint(Checkpoint("ledger.example.com/org/globex", 42, ROOT), SIGNER)
    with pytest.raises(VerificationError, match=re.escape("origin 'ledger.example.com/org/globex' does not match")):
        open_checkpoint(note, VERIFIER, origin=ORIGIN)


def test_checkpoint_signed_by_another_key_is_rejected() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), OTHER_SIGNER)
    with pytest.raises(VerificationError, match="no signature by key"):
        open_checkpoint(note, VERIFIER, origin=ORIGIN)


def test_tampered_checkpoint_is_rejected() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), SIGNER)
    with pytest.raises(VerificationError, match="does not verify"):
        open_checkpoint(note.replace("\n42\n", "\n43\n"), VERIFIER)


_ROOT_B64 = base64.b64encode(ROOT).decode()
_URLSAFE_B64 = base64.urlsafe_b64encode(b"\xfb" * 32).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n42\n{_ROOT_B64}",  # no final newline
        f"{ORIGIN}\n42\n",  # no root line
        f"{ORIGIN}\n42\n{_ROOT_B64}\nextension\n",  # extension line
        f"\n42\n{_ROOT_B64}\n",  # empty origin
        f"{ORIGIN} x\n42\n{_ROOT_B64}\n",  # space in origin
        f"{ORIGIN}\n042\n{_ROOT_B64}\n",  # leading zero
        f"{ORIGIN}\n-1\n{_ROOT_B64}\n",  # negative
        f"{ORIGIN}\n+1\n{_ROOT_B64}\n",  # sign
        f"{ORIGIN}\n\u0664\u0662\n{_ROOT_B64}\n",  # non-ASCII digits
        f"{ORIGIN}\n{2**64}\n{_ROOT_B64}\n",  # beyond 64 bits
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31-byte root
        f"{ORIGIN}\n42\n{_ROOT_B64.rstrip('=')}\n",  # unpadded
        f"{ORIGIN}\n42\n{_ROOT_B64[:-2]}B=\n",  # non-canonical final digit
        f"{ORIGIN}\n42\n{_URLSAFE_B64}\n",  # URL-safe alphabet
    ],
    ids=[
        "no-final-newline",
        "missing-root",
        "extension-line",
        "empty-origin",
        "space-in-origin",
        "leading-zero",
        "negative",
        "plus-sign",
        "arabic-digits",
        "too-large",
        "short-root",
        "unpadded",
        "non-canonical-base64",
        "urlsafe-base64",
    ],
)
def test_malformed_checkpoint_rejected(text: str) -> None:
    with pytest.raises(VerificationError, match=r"^checkpoint"):
        Checkpoint.from_text(text)


# --- key files ------------------------------------------------------------------------------------------------


def test_private_key_file_is_owner_only(tmp_path: Path) -> None:
    key = generate_signer_key(ORIGIN)
    path = tmp_path / "signer.key"
    write_private_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_private_key_file(path) == (key, None)


def test_private_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "signer.key"
    first = generate_signer_key(ORIGIN)
    write_private_key_file(path, first)
    with pytest.raises(FileExistsError):
        write_private_key_file(path, generate_signer_key(ORIGIN))
    assert read_private_key_file(path)[0] == first


def test_readable_private_key_file_warns(tmp_path: Path) -> None:
    key = generate_signer_key(ORIGIN)
    path = tmp_path / "signer.key"
    write_private_key_file(path, key)
    os.chmod(path, 0o644)
    read_key, warning = read_private_key_file(path)
    assert read_key == key
    assert warning is not None
    assert "0644" in warning
    assert f"chmod 600 {path}" in warning


def test_invalid_key_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "signer.key"
    with pytest.raises(VerificationError):
        write_private_key_file(path, "PRIVATE+KEY+broken")
    assert not path.exists()


def test_key_file_with_garbage_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "signer.key"
    path.write_text("not a key\n")
    with pytest.raises(VerificationError, match=f"private key file {path}"):
        read_private_key_file(path)
