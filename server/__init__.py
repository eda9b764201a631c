"""pollama's server: the Ollama-compatible API, the model store, the scheduler and runners."""

__version__ = "0.1.0"
