"""pollama's server: the Ollama-compatible API, the model store, the scheduler and runners."""

__version__ = "0.1.0"

#: What `/api/version` reports: the Ollama release whose API pollama implements. Apps gate
#: features on Ollama's version (structured outputs, tools, thinking), so reporting our own
#: 0.x would switch them off; pollama's own version is at `/api/pollama/version`.
OLLAMA_API_VERSION = "0.33.0"
