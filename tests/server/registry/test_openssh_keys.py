"""The `id_ed25519` file pollama writes and reads is OpenSSH's format, checked against two other
implementations of it: OpenSSH's own `ssh-keygen` and the `cryptography` library (what pollama used
before, and what wrote the keys of existing installs). Bad files fail with a reason, never a crash."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError

from server.registry import keys, openssh

ssh_keygen = shutil.which("ssh-keygen")


def test_the_written_key_is_laid_out_as_ollamas_go_code_writes_it(tmp_path: Path) -> None:
    pair = keys.ensure(tmp_path)
    text = (tmp_path / "id_ed25519").read_text()
    lines = text.splitlines()
    assert lines[0] == "-----BEGIN OPENSSH PRIVATE KEY-----" and lines[-1] == "-----END OPENSSH PRIVATE KEY-----"
    assert text.endswith("-----\n") and all(len(line) == 64 for line in lines[1:-2])  # Go's encoding/pem
    body = base64.b64decode("".join(lines[1:-1]))
    public = base64.b64decode(pair.public_blob_b64)
    # magic, cipher "none", kdf "none", no kdf options, one key, its public blob
    head = b"openssh-key-v1\0" + b"\0\0\0\4none" * 2 + b"\0\0\0\0" + b"\0\0\0\1" + len(public).to_bytes(4, "big")
    assert body.startswith(head + public)
    section = body[len(head) + len(public) + 4 :]
    assert int.from_bytes(body[len(head) + len(public) : len(head) + len(public) + 4], "big") == len(section)
    # check twice, "ssh-ed25519", the public key, seed + public key, no comment: 131 bytes, padded to 136
    assert section[:4] == section[4:8]
    assert section[8:27] == b"\0\0\0\x0bssh-ed25519" + b"\0\0\0\x20" and section[27:59] == bytes(
        pair.private.verify_key
    )
    assert (
        section[59:63] == b"\0\0\0\x40" and section[63:95] == bytes(pair.private) and section[95:127] == section[27:59]
    )
    assert section[127:] == b"\0\0\0\0" + bytes([1, 2, 3, 4, 5])


def test_cryptography_reads_pollamas_key_and_pollama_reads_cryptographys(tmp_path: Path) -> None:
    pair = keys.ensure(tmp_path / "ours")
    theirs = serialization.load_ssh_private_key((tmp_path / "ours" / "id_ed25519").read_bytes(), password=None)
    assert isinstance(theirs, Ed25519PrivateKey)
    raw = theirs.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == bytes(pair.private.verify_key)
    assert theirs.sign(b"payload") == pair.sign(b"payload")  # ed25519 is deterministic: the same key

    made = Ed25519PrivateKey.generate()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "id_ed25519").write_bytes(
        made.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    loaded = keys.load(tmp_path / "old")
    line = made.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert loaded.public_line == line.decode()
    assert loaded.sign(b"x") == made.sign(b"x")


@pytest.mark.skipif(ssh_keygen is None, reason="needs OpenSSH's ssh-keygen (openssh-client)")
def test_ssh_keygen_reads_pollamas_key_and_pollama_reads_ssh_keygens(tmp_path: Path) -> None:
    assert ssh_keygen is not None
    pair = keys.ensure(tmp_path / "ours")
    derived = subprocess.run(
        [ssh_keygen, "-y", "-f", str(tmp_path / "ours" / "id_ed25519")], capture_output=True, text=True, check=True
    ).stdout
    assert derived.split()[:2] == pair.public_line.split()
    assert (tmp_path / "ours" / "id_ed25519.pub").read_text() == pair.public_line + "\n"

    (tmp_path / "theirs").mkdir()
    key = tmp_path / "theirs" / "id_ed25519"
    subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f", str(key)], check=True)
    loaded = keys.load(tmp_path / "theirs")
    assert (tmp_path / "theirs" / "id_ed25519.pub").read_text().split()[:2] == loaded.public_line.split()


def test_a_signature_verifies_with_the_public_blob_and_only_for_its_data(tmp_path: Path) -> None:
    pair = keys.ensure(tmp_path)
    public = keys.public_key_from_blob(pair.public_blob_b64)
    signature = pair.sign(b"GET,https://registry.ollama.ai/v2/token,abc")
    assert len(signature) == 64
    public.verify(b"GET,https://registry.ollama.ai/v2/token,abc", signature)
    with pytest.raises(BadSignatureError):
        public.verify(b"GET,https://registry.ollama.ai/v2/token,abd", signature)
    # the same check by the other implementation
    other = serialization.load_ssh_public_key(pair.public_line.encode())
    assert isinstance(other, Ed25519PublicKey)
    other.verify(signature, b"GET,https://registry.ollama.ai/v2/token,abc")


def _body(path: Path) -> bytes:
    lines = path.read_text().splitlines()
    return base64.b64decode("".join(lines[1:-1]))


def _armored(body: bytes) -> bytes:
    return b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + base64.b64encode(body) + b"\n-----END OPENSSH PRIVATE KEY-----\n"


def test_bad_key_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    keys.ensure(tmp_path / "good")
    good = _body(tmp_path / "good" / "id_ed25519")
    home = tmp_path / "bad"
    home.mkdir()
    cases = {
        b"": "no -----BEGIN OPENSSH PRIVATE KEY----- block",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----\n": "base64 is malformed",
        _armored(b"openssh-key-v2\0" + good[15:]): "no openssh-key-v1 header",
        _armored(good[:60]): "truncated",
        _armored(good.replace(b"\0\0\0\4none\0\0\0\4none", b"\0\0\0\x0aaes256-ctr\0\0\0\4none", 1)): "encrypted",
    }
    flipped = bytearray(good)
    flipped[good.index(b"\0\0\0\x0bssh-ed25519", 60) - 1] ^= 1  # the second check number
    cases[_armored(bytes(flipped))] = "check numbers differ"
    for data, reason in cases.items():
        (home / "id_ed25519").write_bytes(data)
        with pytest.raises(ValueError, match=reason):
            keys.load(home)
    with pytest.raises(ValueError, match="not an ssh-ed25519 public key"):
        keys.public_key_from_blob(base64.b64encode(openssh._string(b"ssh-rsa") + openssh._string(b"x")).decode())
    with pytest.raises(ValueError, match="malformed public key"):
        keys.public_key_from_blob("not base64!")
