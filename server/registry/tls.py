"""The TLS trust a registry connection uses: the system store plus `SSL_CERT_FILE`/`SSL_CERT_DIR`.

OpenSSL's own reading of `SSL_CERT_FILE` *replaces* the system bundle, so a
user who adds a private CA that way would lose every public one; here both are
loaded. Where the system store is empty (minimal containers) certifi's bundle
stands in, so public registries still work.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping


def client_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    environ = os.environ if environ is None else environ
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    paths = ssl.get_default_verify_paths()
    for cafile, capath in ((paths.openssl_cafile, None), (None, paths.openssl_capath)):
        try:
            if (cafile and os.path.isfile(cafile)) or (capath and os.path.isdir(capath)):
                ctx.load_verify_locations(cafile=cafile, capath=capath)
        except (OSError, ssl.SSLError):
            pass
    try:
        ctx.load_default_certs()  # Windows and macOS system stores; harmless elsewhere
    except (OSError, ssl.SSLError):
        pass
    if ctx.cert_store_stats().get("x509_ca", 0) == 0 and not (
        paths.openssl_capath and os.path.isdir(paths.openssl_capath)
    ):
        try:
            import certifi

            ctx.load_verify_locations(cafile=certifi.where())
        except (ImportError, OSError, ssl.SSLError):
            pass
    extra_file = environ.get("SSL_CERT_FILE")
    if extra_file:
        ctx.load_verify_locations(cafile=extra_file)
    extra_dir = environ.get("SSL_CERT_DIR")
    if extra_dir and os.path.isdir(extra_dir):
        ctx.load_verify_locations(capath=extra_dir)
    return ctx
