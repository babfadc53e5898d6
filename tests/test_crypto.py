"""The legacy password exchange (docs/protocol.md, "Password crypto"): its test vectors, and interop with the
real openssl CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import crypto

DH_PRIVATE = int(
    "2311212056221575424181384077217018408327386330309836681185200335772446841869122972713534217535689064"
    "137278608958579090107008875567526954383165078584702603331246342023613076766721726")
DH_PEER = 29146890515040234272807524713655
DH_SHARED = "27234591073885988013566387861589"
DH_OWN_PUBLIC = 42805172337268022151334642758138


@pytest.mark.parametrize(("digest", "key", "iv"), [
    ("md5", "5ebe2294ecd0e0f08eab7690d2a6ee69", "26ae5cc854e36b6bdfca366848dea6bb"),
    ("sha256", "2bb80d537b1da3e38bd30361aa855686", "bde0eacd7162fef6a25fe97bf527a25b"),
])
def test_evp_bytes_to_key_vectors(digest: str, key: str, iv: str) -> None:
    """EVP_BytesToKey over the passphrase 'secret' gives the protocol's key and IV for both digests."""
    assert crypto.evp_bytes_to_key(b"secret", digest) == (bytes.fromhex(key), bytes.fromhex(iv))


@pytest.mark.parametrize(("secret", "ciphertext", "password", "derivation"), [
    ("secret", "OTfAog/nwyzIcYOhvCBL0w==", "rackspace", "md5"),
    ("secret", "i+TRKYjYtcB7KWMPdWCROw==", "rackspace", "sha256"),
    (DH_SHARED, "a7R6H03wiWGrFEVIYm/C4g==", "Passw0rd!", "md5"),
    (DH_SHARED, "czgApfg3J/SaZpC0Idbs8Q==", "Passw0rd!", "sha256"),
])
def test_decrypt_vectors(secret: str, ciphertext: str, password: str, derivation: str) -> None:
    """Each protocol vector decrypts to its password, and the derivation that matched is reported."""
    assert crypto.decrypt_password(crypto.decode_ciphertext(ciphertext), secret) == (password, derivation)


@pytest.mark.parametrize("derivation", crypto.DERIVATIONS)
def test_encrypt_matches_vectors(derivation: str) -> None:
    """The host side's encryption produces the protocol's ciphertexts exactly."""
    expected = {"md5": "a7R6H03wiWGrFEVIYm/C4g==", "sha256": "czgApfg3J/SaZpC0Idbs8Q=="}[derivation]
    assert crypto.encrypt_password("Passw0rd!", DH_SHARED, derivation) == expected


def test_dh_vector() -> None:
    """The DH vector: own public key and shared secret as decimal strings."""
    assert crypto.public_key(DH_PRIVATE) == DH_OWN_PUBLIC
    assert crypto.shared_secret(DH_PRIVATE, DH_PEER) == DH_SHARED


def test_toy_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's key functions in the toy group p=23, g=5: 6 -> 8, 15 -> 19, shared "2"; keys in (1, p-1)."""
    monkeypatch.setattr(crypto, "PRIME", 23)
    monkeypatch.setattr(crypto, "GENERATOR", 5)
    assert (crypto.public_key(6), crypto.public_key(15)) == (8, 19)
    assert crypto.shared_secret(6, crypto.parse_public_key("19")) == "2"
    assert crypto.shared_secret(15, crypto.parse_public_key("8")) == "2"
    assert crypto.parse_public_key("21") == 21
    with pytest.raises(crypto.KeyExchangeError, match="out of range"):
        crypto.parse_public_key("22")
    assert {crypto.private_key() for _ in range(500)} <= set(range(2, 22))


def test_fresh_keys_agree() -> None:
    """Two fresh private keys in the real group reach the same secret from each other's public key."""
    mine, theirs = crypto.private_key(), crypto.private_key()
    secret = crypto.shared_secret(mine, crypto.public_key(theirs))
    assert secret == crypto.shared_secret(theirs, crypto.public_key(mine))
    assert 1 < int(secret) < crypto.PRIME


def test_private_keys_are_in_range_and_distinct() -> None:
    """Private keys fall in [2, p-2] and do not repeat."""
    keys = {crypto.private_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(2 <= k <= crypto.PRIME - 2 for k in keys)


@pytest.mark.parametrize("value", ["", "abc", "12a", "-5", "1.5", " ", None, [], {}, True, "٣٤"])
def test_public_key_not_decimal(value: object) -> None:
    """A public key that is not a decimal number is refused with a message saying so."""
    with pytest.raises(crypto.KeyExchangeError, match="decimal number"):
        crypto.parse_public_key(value)


@pytest.mark.parametrize("value", ["0", "1", "00", str(crypto.PRIME - 1), str(crypto.PRIME), str(crypto.PRIME + 5),
                                   "9" * 5000])
def test_public_key_out_of_range(value: str) -> None:
    """Public keys outside (1, p-1) are refused: they would force a known shared secret."""
    with pytest.raises(crypto.KeyExchangeError, match="out of range"):
        crypto.parse_public_key(value)


def test_public_key_accepts_json_number() -> None:
    """A host that sends the key as a JSON number instead of a string is still understood."""
    assert crypto.parse_public_key(DH_PEER) == DH_PEER


@pytest.mark.parametrize("ciphertext", [b"", b"x" * 15, b"x" * 17])
def test_not_whole_blocks(ciphertext: bytes) -> None:
    """A ciphertext that is not whole AES blocks is refused before any decryption."""
    with pytest.raises(crypto.DecryptionError, match="AES blocks"):
        crypto.decrypt_password(ciphertext, "secret")


def test_wrong_secret_is_refused() -> None:
    """Under another exchange's secret the vector does not decrypt (no garbage password accepted)."""
    with pytest.raises(crypto.DecryptionError, match="does not decrypt"):
        crypto.decrypt_password(crypto.decode_ciphertext("a7R6H03wiWGrFEVIYm/C4g=="), "12345")


@pytest.mark.parametrize(("plain", "reason"), [("\n", "empty"), ("a\nb\n", "line break"), ("a\0b\n", "NUL")])
def test_unsafe_passwords_are_refused(plain: str, reason: str) -> None:
    """Passwords that chpasswd's line format cannot carry safely are refused, not set."""
    ciphertext = crypto.decode_ciphertext(crypto.encrypt_password(plain[:-1], "secret", "md5"))
    with pytest.raises(crypto.DecryptionError, match=reason):
        crypto.decrypt_password(ciphertext, "secret")


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), min_size=1),
       st.sampled_from(crypto.DERIVATIONS))
def test_round_trip(password: str, derivation: str) -> None:
    """Any settable password survives encryption by the host and decryption by the agent."""
    ciphertext = crypto.decode_ciphertext(crypto.encrypt_password(password, DH_SHARED, derivation))
    assert crypto.decrypt_password(ciphertext, DH_SHARED) == (password, derivation)


@given(st.binary(min_size=16, max_size=64).filter(lambda b: len(b) % 16 == 0))
def test_random_ciphertexts_never_crash(ciphertext: bytes) -> None:
    """Arbitrary block-sized data raises DecryptionError, or decrypts to a settable password that the host's
    encryption turns back into the same bytes."""
    try:
        password, derivation = crypto.decrypt_password(ciphertext, DH_SHARED)
    except crypto.DecryptionError:
        return
    assert password and not any(c in password for c in "\r\n\0")
    assert crypto.decode_ciphertext(crypto.encrypt_password(password, DH_SHARED, derivation)) == ciphertext


@pytest.mark.parametrize(("flags", "derivation"), [([], "sha256"), (["-md", "md5"], "md5")])
def test_openssl_interop(flags: list[str], derivation: str) -> None:
    """The real openssl CLI, run as nova runs it (default digest, and -md md5), is decrypted correctly."""
    # The passphrase is on openssl's command line because that is exactly what nova does; it is a test key.
    result = subprocess.run(
        ["openssl", "enc", "-aes-128-cbc", "-A", "-a", "-pass", f"pass:{DH_SHARED}", "-nosalt", *flags],
        input=b"Passw0rd!\n", capture_output=True, check=True)
    ciphertext = result.stdout.decode().strip()
    assert "\n" not in ciphertext
    assert crypto.decrypt_password(crypto.decode_ciphertext(ciphertext), DH_SHARED) == ("Passw0rd!", derivation)


def test_daemon_starts_without_cryptography() -> None:
    """The daemon's imports leave cryptography out (about 6 MB of its 50 MB budget) until a password or a
    release signature needs it."""
    script = "import sys, agent.daemon, agent.cli; print(any(m.startswith('cryptography') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
