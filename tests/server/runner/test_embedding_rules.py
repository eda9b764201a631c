"""Ollama's embed rules (`server/routes.go` `EmbedHandler`, `EmbeddingsHandler`) as plain functions: truncation, normalization, dimensions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from server.runner.embedding import EmbedError, EmbedFailure, finish_vector, fit_tokens


def test_fit_tokens_keeps_closing_token() -> None:
    assert fit_tokens([1, 2, 3], 5, False, {9}) == [1, 2, 3]
    assert fit_tokens([1, 2, 3, 4, 9], 3, True, {9}) == [1, 2, 9]
    assert fit_tokens([1, 2, 3, 4, 5], 3, True, {9}) == [1, 2, 3]
    with pytest.raises(EmbedError, match="the input length exceeds the context length"):
        fit_tokens([1, 2, 3, 4], 3, False, set())


def test_normalize_and_dimensions() -> None:
    v = np.array([3.0, 4.0, 12.0], dtype=np.float32)
    out = finish_vector(v, normalize=True, dimensions=None)
    assert math.isclose(sum(x * x for x in out), 1.0, rel_tol=1e-6)
    cut = finish_vector(v, normalize=True, dimensions=2)
    assert cut == pytest.approx([0.6, 0.8], rel=1e-6)
    raw = finish_vector(v, normalize=False, dimensions=None)
    assert raw == [3.0, 4.0, 12.0]


def test_nan_is_an_error() -> None:
    with pytest.raises(EmbedFailure):
        finish_vector(np.array([1.0, float("nan")], dtype=np.float32), normalize=True, dimensions=None)
