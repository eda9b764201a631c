"""Translators between the OpenAI / Anthropic wire shapes and Ollama's native ones.

Pure functions and small stateful stream converters, with no HTTP and no
service calls: a request body goes in, a native `GenerateRequest` /
`ChatRequest` / `EmbedRequest` comes out; the inference service's typed
events (`server.inference.events`) go in, the foreign API's chunks come out. The blueprints in `server/api/openai.py` and
`server/api/anthropic.py` only glue these to the inference service, the way
Ollama's middleware wraps its native handlers. Keeping them pure lets every
mapping and every stream sequence be tested without a runner.
"""
