"""The runner: one process per loaded model, its protocol, its batching engine, and the
server-side client (`server.runner.client`).

Importing this package must stay cheap and must not load llama.cpp: the server process
imports it for `grammar_for_format` and the client.
"""

from server.runner.grammar import grammar_for_format

__all__ = ["grammar_for_format"]
