"""API token format and hashing (shared by bootstrap and the rpc edge).

Tokens are 256-bit random values, so SHA-256 at rest is enough: there is
nothing to brute-force that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "cf_"  # noqa: S105 - a marker, not a secret


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
