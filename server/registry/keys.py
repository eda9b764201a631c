"""The ed25519 key pair Ollama's registry knows a user by (`~/.ollama/id_ed25519`).

Same files, same formats as Ollama (OpenSSH private key, `ssh-ed25519 AAAA…`
public line), so a key made by either program works for both, and a key
already registered on ollama.com or Hugging Face keeps working.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.store.fileio import O_BINARY

KEY_NAME = "id_ed25519"


@dataclass(frozen=True)
class KeyPair:
    private: Ed25519PrivateKey

    @property
    def public_line(self) -> str:
        """`ssh-ed25519 AAAA…`, the `.pub` file's content without the newline."""
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )

    @property
    def public_blob_b64(self) -> str:
        """The second field of the `.pub` line: base64 of the SSH wire-format public key."""
        return self.public_line.split(" ")[1]

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def authorization(self, data: bytes) -> str:
        """Ollama's signature header value: `<base64 pubkey blob>:<base64 raw signature>`."""
        return f"{self.public_blob_b64}:{base64.b64encode(self.sign(data)).decode()}"


def public_key_from_blob(blob_b64: str) -> Ed25519PublicKey:
    """Parse the base64 SSH public key blob (what a registry gets in the header)."""
    key = serialization.load_ssh_public_key(f"ssh-ed25519 {blob_b64}".encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an ed25519 key")
    return key


def load(home: Path) -> KeyPair:
    """Read `<home>/id_ed25519`; raises OSError/ValueError if missing or not an ed25519 key."""
    data = (home / KEY_NAME).read_bytes()
    key = serialization.load_ssh_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{home / KEY_NAME} is not an ed25519 key")
    return KeyPair(key)


def ensure(home: Path) -> KeyPair:
    """Load the key pair, creating it first if there is none (what `ollama serve` does)."""
    path = home / KEY_NAME
    if path.exists():
        return load(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o755)
    pair = KeyPair(Ed25519PrivateKey.generate())
    pem = pair.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    _write_new(path, pem, 0o600)
    _write_new(home / (KEY_NAME + ".pub"), (pair.public_line + "\n").encode(), 0o644)
    return pair


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with the final permissions from the start (never a world-readable private key)."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_BINARY, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
