"""Generation and embeddings as services: what every API surface calls."""
