"""The legacy password exchange, bit-exact: Diffie-Hellman, EVP_BytesToKey, AES-128-CBC.

The scheme, its history and its test vectors are in docs/protocol.md, section "Password crypto".

The host (nova) agrees a secret with ``keyinit`` over a 107-bit group, then sends the password encrypted
the way ``openssl enc -aes-128-cbc -A -a -pass pass:<secret> -nosalt`` does it. OpenSSL 1.1.0 changed that
command's key derivation from MD5 to SHA-256 and nova never pinned one, so a ciphertext may come from
either: both are tried, and a candidate counts only when its whole PKCS#7 padding is valid, its text is
UTF-8 and it ends in the newline nova appends. The group is weak by today's standards (107 bits); it is
kept for compatibility, confined to this exchange, and its strength is journaled.

``cryptography`` is imported when a password is first decrypted, not with the daemon: it costs about 6 MB
of the agent's 50 MB memory budget, and most agents never see a password after the first boot.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from typing import Any

#: The group: the Mersenne prime 2^107 - 1 and generator 5, as nova and every earlier agent use them.
PRIME = 2**107 - 1
GENERATOR = 5
GROUP_BITS = 107
#: Random bits drawn for a private key (nova: 80, the unix agent: 128).
PRIVATE_KEY_BITS = 256

KEY_SIZE = IV_SIZE = 16
BLOCK_SIZE = 16
#: Key derivations in the order they are tried: the earlier agents' MD5 first, then OpenSSL ≥ 1.1.0's.
DERIVATIONS = ("md5", "sha256")

_DECIMAL = re.compile(r"[0-9]+")
_MAX_DIGITS = len(str(PRIME))


class KeyExchangeError(ValueError):
    """The host's public key is not usable; the message says why and holds no secret."""


class DecryptionError(ValueError):
    """A ciphertext does not decrypt to a password under the exchange's secret."""


def private_key() -> int:
    """A fresh private key: 256 bits from the OS's CSPRNG, brought into [2, p-2]."""
    return 2 + secrets.randbits(PRIVATE_KEY_BITS) % (PRIME - 3)


def public_key(private: int) -> int:
    return pow(GENERATOR, private, PRIME)


def parse_public_key(value: object) -> int:
    """The peer's public key from the protocol's decimal string; checks that it is in (1, p-1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value.strip()):
        raise KeyExchangeError("the host's public key must be a decimal number")
    digits = value.strip().lstrip("0") or "0"
    # Length first: int() of a huge digit string is slow, and such a key is out of range anyway.
    if len(digits) > _MAX_DIGITS or not 1 < int(digits) < PRIME - 1:
        raise KeyExchangeError("the host's public key is out of range: it must be greater than 1 and less "
                               "than p-1 for the 107-bit group")
    return int(digits)


def shared_secret(private: int, peer_public: int) -> str:
    """The agreed secret as the decimal string that both sides use as the passphrase."""
    return str(pow(peer_public, private, PRIME))


def evp_bytes_to_key(passphrase: bytes, digest: str) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with no salt and one round: (AES-128 key, IV).

    Each block is digest(previous block ‖ passphrase) until key and IV are filled. MD5 needs two blocks
    (key = MD5(S), IV = MD5(key ‖ S)); SHA-256 fills both from its first.
    """
    derived = b""
    block = b""
    while len(derived) < KEY_SIZE + IV_SIZE:
        block = hashlib.new(digest, block + passphrase).digest()
        derived += block
    return derived[:KEY_SIZE], derived[KEY_SIZE:KEY_SIZE + IV_SIZE]


def decode_ciphertext(value: object) -> bytes:
    """The ciphertext from the protocol's base64 (single-line, or wrapped as older OpenSSL wrote it)."""
    if not isinstance(value, str):
        raise binascii.Error("expected a base64 string")
    return base64.b64decode("".join(value.split()), validate=True)


def decrypt_password(ciphertext: bytes, secret: str) -> tuple[str, str]:
    """Decrypt a password sent by the host; return (password, derivation that matched).

    Raises DecryptionError when no derivation yields a valid padding, UTF-8 text ending in a newline, or
    when the password could not be set safely (a line break or NUL inside it).
    """
    if not ciphertext or len(ciphertext) % BLOCK_SIZE:
        raise DecryptionError("the ciphertext is not a whole number of AES blocks")
    for derivation in DERIVATIONS:
        text = _try(ciphertext, secret, derivation)
        if text is None:
            continue
        password = text[:-1]
        if not password:
            raise DecryptionError("the password is empty")
        if any(c in password for c in "\r\n\0"):
            raise DecryptionError("the password holds a line break or NUL character")
        return password, derivation
    raise DecryptionError("the ciphertext does not decrypt under this key exchange")


def _aes_cbc(secret: str, derivation: str) -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key, iv = evp_bytes_to_key(secret.encode("ascii"), derivation)
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def _pkcs7() -> Any:
    from cryptography.hazmat.primitives import padding

    return padding.PKCS7(BLOCK_SIZE * 8)


def _try(ciphertext: bytes, secret: str, derivation: str) -> str | None:
    decryptor = _aes_cbc(secret, derivation).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = _pkcs7().unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()  # checks every padding byte
        text = plain.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return text if text.endswith("\n") else None


def encrypt_password(password: str, secret: str, derivation: str = "sha256") -> str:
    """What the host sends: ``password + "\\n"`` encrypted as ``openssl enc`` does, single-line base64."""
    padder = _pkcs7().padder()
    padded = padder.update((password + "\n").encode("utf-8")) + padder.finalize()
    encryptor = _aes_cbc(secret, derivation).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")

