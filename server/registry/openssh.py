"""OpenSSH's ed25519 key formats: the `id_ed25519` private key file and the `ssh-ed25519` public blob.

Ollama writes its key with Go's `golang.org/x/crypto/ssh` `MarshalPrivateKey`
and `encoding/pem` `EncodeToMemory` (Ollama's `cmd/cmd.go` `initializeKeypair`),
and reads it with `ssh.ParseRawPrivateKey` (`auth/auth.go` `Sign`). The layout is
OpenSSH's own, described in its `PROTOCOL.key`: the PEM block `OPENSSH PRIVATE
KEY` holding

    "openssh-key-v1\\0"
    string cipher "none", string kdf "none", string kdf options ""
    uint32 1 (keys), string public key blob
    string private section:
        uint32 check, uint32 check (the same random number twice)
        string "ssh-ed25519", string public key (32 bytes)
        string seed || public key (64 bytes), string comment
        padding 1, 2, 3, ... to a multiple of 8

where `string` is a uint32 big-endian length and the bytes. Only unencrypted
ed25519 keys are read: what Ollama and pollama write (an encrypted key could
not be used by a server without asking for its passphrase anyway).

This is written here rather than taken from `cryptography` because the format is
all pollama needs of it, and that library is 14 MB of the 200 MB bundle
(packaging/bundle_files.py); the signing itself is libsodium's, through PyNaCl
(server/registry/keys.py).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
from dataclasses import dataclass

KEY_TYPE = b"ssh-ed25519"
MAGIC = b"openssh-key-v1\0"
PEM_TYPE = "OPENSSH PRIVATE KEY"
#: Go's `encoding/pem` wraps base64 at 64 columns (OpenSSH's ssh-keygen at 70; both read either).
PEM_LINE = 64


@dataclass(frozen=True)
class Ed25519Key:
    """An ed25519 private key as the file holds it: the 32-byte seed and its public key."""

    seed: bytes
    public: bytes
    comment: bytes = b""


def public_blob(public: bytes) -> bytes:
    """The SSH wire-format public key: string "ssh-ed25519", string key."""
    return _string(KEY_TYPE) + _string(public)


def parse_public_blob(blob: bytes) -> bytes:
    """The 32-byte key of an `ssh-ed25519` public blob; ValueError for anything else."""
    reader = _Reader(blob)
    if reader.string() != KEY_TYPE:
        raise ValueError("not an ssh-ed25519 public key")
    key = reader.string()
    if len(key) != 32 or reader.rest():
        raise ValueError("malformed ssh-ed25519 public key")
    return key


def encode_private(key: Ed25519Key) -> bytes:
    """The private key file's bytes, laid out as Ollama's Go code writes them."""
    check = struct.pack(">I", secrets.randbits(32))
    private = check + check + _string(KEY_TYPE) + _string(key.public)
    private += _string(key.seed + key.public) + _string(key.comment)
    private += bytes(range(1, 1 + (-len(private) % 8)))
    body = MAGIC + _string(b"none") + _string(b"none") + _string(b"") + struct.pack(">I", 1)
    body += _string(public_blob(key.public)) + _string(private)
    text = base64.b64encode(body).decode()
    lines = "\n".join(text[i : i + PEM_LINE] for i in range(0, len(text), PEM_LINE))
    return f"-----BEGIN {PEM_TYPE}-----\n{lines}\n-----END {PEM_TYPE}-----\n".encode()


def decode_private(data: bytes) -> Ed25519Key:
    """Parse a private key file; ValueError (saying what is wrong) unless it is an unencrypted
    OpenSSH ed25519 key whose parts agree."""
    body = _unarmor(data)
    if not body.startswith(MAGIC):
        raise ValueError("not an OpenSSH private key (no openssh-key-v1 header)")
    reader = _Reader(body[len(MAGIC) :])
    cipher, kdf = reader.string(), reader.string()
    reader.string()  # kdf options
    if cipher != b"none" or kdf != b"none":
        raise ValueError(
            f"the private key is encrypted ({cipher.decode(errors='replace')}); pollama needs it without a passphrase"
        )
    if reader.uint32() != 1:
        raise ValueError("the private key file must hold exactly one key")
    outer_public = parse_public_blob(reader.string())
    section = _Reader(reader.string())
    if section.uint32() != section.uint32():
        raise ValueError("the private key's check numbers differ (corrupt file)")
    if section.string() != KEY_TYPE:
        raise ValueError("not an ed25519 key")
    public, secret, comment = section.string(), section.string(), section.string()
    padding = section.rest()
    if padding != bytes(range(1, 1 + len(padding))):
        raise ValueError("malformed private key padding")
    if len(public) != 32 or len(secret) != 64 or secret[32:] != public or public != outer_public:
        raise ValueError("malformed ed25519 private key")
    return Ed25519Key(secret[:32], public, comment)


def _unarmor(data: bytes) -> bytes:
    text = data.decode("ascii", errors="replace").strip()
    begin, end = f"-----BEGIN {PEM_TYPE}-----", f"-----END {PEM_TYPE}-----"
    if not text.startswith(begin) or not text.endswith(end):
        raise ValueError(f"not an OpenSSH private key (no {begin} block)")
    try:
        return base64.b64decode("".join(text[len(begin) : -len(end)].split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the private key's base64 is malformed: {exc}") from None


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    """SSH wire-format fields, in order; ValueError when the data runs out."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def _take(self, n: int) -> bytes:
        if self._at + n > len(self._data):
            raise ValueError("truncated OpenSSH key data")
        out = self._data[self._at : self._at + n]
        self._at += n
        return out

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self._take(4))[0]
        return value

    def string(self) -> bytes:
        return self._take(self.uint32())

    def rest(self) -> bytes:
        return self._take(len(self._data) - self._at)
