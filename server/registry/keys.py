"""The ed25519 key pair Ollama's registry knows a user by (`~/.ollama/id_ed25519`).

Same files, same formats as Ollama (OpenSSH private key, `ssh-ed25519 AAAA…`
public line), so a key made by either program works for both, and a key
already registered on ollama.com or Hugging Face keeps working. The file formats
are server/registry/openssh.py's; ed25519 itself is libsodium's, through PyNaCl.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from server import atomicfile
from server.registry import openssh

KEY_NAME = "id_ed25519"


@dataclass(frozen=True)
class KeyPair:
    private: SigningKey

    @property
    def public_line(self) -> str:
        """`ssh-ed25519 AAAA…`, the `.pub` file's content without the newline."""
        return f"ssh-ed25519 {self.public_blob_b64}"

    @property
    def public_blob_b64(self) -> str:
        """The second field of the `.pub` line: base64 of the SSH wire-format public key."""
        return base64.b64encode(openssh.public_blob(bytes(self.private.verify_key))).decode()

    def sign(self, data: bytes) -> bytes:
        """The raw 64-byte ed25519 signature (Go's `ssh.Signer.Sign` blob for this key type)."""
        return self.private.sign(data).signature

    def authorization(self, data: bytes) -> str:
        """Ollama's signature header value: `<base64 pubkey blob>:<base64 raw signature>`."""
        return f"{self.public_blob_b64}:{base64.b64encode(self.sign(data)).decode()}"


def public_key_from_blob(blob_b64: str) -> VerifyKey:
    """Parse the base64 SSH public key blob (what a registry gets in the header); ValueError if
    it is not an ed25519 one."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except ValueError as exc:
        raise ValueError(f"malformed public key: {exc}") from None
    return VerifyKey(openssh.parse_public_blob(blob))


def load(home: Path) -> KeyPair:
    """Read `<home>/id_ed25519`; raises OSError/ValueError if missing or not an ed25519 key."""
    path = home / KEY_NAME
    try:
        key = openssh.decode_private(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    private = SigningKey(key.seed)
    if bytes(private.verify_key) != key.public:
        raise ValueError(f"{path}: the public key does not match the private key")
    return KeyPair(private)


def ensure(home: Path) -> KeyPair:
    """Load the key pair, creating it first if there is none (what `ollama serve` does)."""
    path = home / KEY_NAME
    if path.exists():
        return load(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o755)
    pair = KeyPair(SigningKey.generate())
    pem = openssh.encode_private(openssh.Ed25519Key(bytes(pair.private), bytes(pair.private.verify_key)))
    # the final permissions from the start: never a world-readable private key, not even for a moment
    atomicfile.write_bytes(path, pem, mode=0o600)
    atomicfile.write_bytes(home / (KEY_NAME + ".pub"), (pair.public_line + "\n").encode(), mode=0o644)
    return pair
