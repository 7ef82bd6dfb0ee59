"""Ed25519 signing and verifying keys, and the private-key file.

A key is named by its key id (a hash of the raw public key) so envelopes and
descriptors can refer to keys without carrying them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from credfed.errors import KeyFileError, SignatureError

RAW_KEY_SIZE = 32
SIGNATURE_SIZE = 64
_MAX_KEY_FILE = 16 * 1024  # an Ed25519 PEM is ~120 bytes; refuse to slurp anything big


def key_id_for(public_raw: bytes) -> str:
    """First 16 bytes of SHA-256 of the raw public key, as 32 hex characters."""
    if len(public_raw) != RAW_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {RAW_KEY_SIZE} bytes, got {len(public_raw)}")
    return hashlib.sha256(public_raw).digest()[:16].hex()


class VerifyingKey:
    """An Ed25519 public key."""

    __slots__ = ("_key", "_key_id", "_raw")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self._raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._key_id = key_id_for(self._raw)  # read on every signature

    @classmethod
    def from_raw(cls, raw: bytes) -> VerifyingKey:
        if len(raw) != RAW_KEY_SIZE:
            raise SignatureError(f"an Ed25519 public key is {RAW_KEY_SIZE} bytes, got {len(raw)}")
        try:
            return cls(Ed25519PublicKey.from_public_bytes(bytes(raw)))
        except ValueError as exc:
            raise SignatureError(f"invalid Ed25519 public key: {exc}") from None

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def key_id(self) -> str:
        return self._key_id

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise SignatureError unless ``signature`` is this key's over ``data``."""
        try:
            self._key.verify(bytes(signature), bytes(data))
        except InvalidSignature:
            raise SignatureError(f"signature by key {self.key_id} does not verify") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyingKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"VerifyingKey(key_id={self.key_id!r})"


class SigningKey:
    """An Ed25519 private key. Its repr never shows secret material."""

    __slots__ = ("_key", "_verifying")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._verifying = VerifyingKey(key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key for a 32-byte RFC 8032 seed (the "secret key" of the RFC)."""
        if len(seed) != RAW_KEY_SIZE:
            raise ValueError(f"an Ed25519 seed is {RAW_KEY_SIZE} bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @property
    def key_id(self) -> str:
        return self._verifying.key_id

    @property
    def public_raw(self) -> bytes:
        return self._verifying.raw

    def verifying_key(self) -> VerifyingKey:
        return self._verifying

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(bytes(data))

    def save(self, path: Path) -> None:
        """Write the key as unencrypted PKCS#8 PEM, readable by the owner only.

        Never overwrites: losing a node's signing key to a typo is not
        recoverable. The file is created with mode 0600 atomically (O_EXCL), so
        there is no window in which it exists with wider permissions.
        """
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise KeyFileError(f"key file {path} already exists; refusing to overwrite") from None
        except OSError as exc:
            raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            # A truncated key file would block the next save; remove it.
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise KeyFileError(f"cannot write key file {path}: {exc.strerror}") from None

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key written by :meth:`save`; refuse files others can access."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise KeyFileError(f"key file {path} does not exist") from None
        except OSError as exc:
            raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
        try:
            # fstat on the open descriptor: the file checked is the file read.
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"key file {path} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"key file {path} is readable by others (mode {mode:04o}); chmod 600"
                )
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(_MAX_KEY_FILE + 1)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        if len(data) > _MAX_KEY_FILE:
            raise KeyFileError(f"key file {path} is too large to be an Ed25519 key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # TypeError: the PEM is encrypted; ValueError: not a parseable key.
            raise KeyFileError(f"key file {path} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"key file {path} holds a {type(key).__name__}, not Ed25519")
        return cls(key)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"
