"""Whether a draft model can draft for a model: the two must share one vocabulary.

Speculative decoding hands the draft's token ids to the target model as they
are, so a draft whose ids mean other text would only ever be rejected (or, with
a larger vocabulary, name tokens the target does not have). llama.cpp's
`common_speculative_are_compatible` (common/speculative.cpp) compares the
vocabulary type, BOS/EOS and the token texts; pollama compares the same from
the two GGUF headers at create time, so a bad draft is refused with a reason
before it is stored, not discovered at load. It is stricter than llama.cpp on
size (llama.cpp tolerates 128 extra tokens): the engine never has to map ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.errors import BadRequest
from server.store.gguf_info import GGUFInfo, read_gguf

#: Header keys that decide how text becomes ids, and which ids start and end a text.
_SAME_KEYS = (
    ("tokenizer.ggml.model", "tokenizer type"),
    ("tokenizer.ggml.pre", "pre-tokenizer"),
    ("tokenizer.ggml.bos_token_id", "BOS token id"),
    ("tokenizer.ggml.eos_token_id", "EOS token id"),
    ("tokenizer.ggml.add_bos_token", "add-BOS setting"),
)


def check_draft_vocabulary(model_path: Path, draft_path: Path, *, draft_name: str = "the draft model") -> None:
    """Raise BadRequest (400) naming the first difference when `draft_path` cannot draft for `model_path`."""
    model = read_gguf(model_path, verbose=True)
    draft = read_gguf(draft_path, verbose=True)
    problem = vocabulary_difference(model, draft)
    if problem:
        raise BadRequest(f"draft model {draft_name} does not share the model's vocabulary: {problem}")


def vocabulary_difference(model: GGUFInfo, draft: GGUFInfo) -> str | None:
    """The first way the draft's vocabulary differs from the model's, in words; None when it is the same."""
    for key, what in _SAME_KEYS:
        a, b = model.get(key), draft.get(key)
        if a != b:
            return f"{what} is {_show(b)} in the draft but {_show(a)} in the model"
    tokens_model = model.get("tokenizer.ggml.tokens")
    tokens_draft = draft.get("tokenizer.ggml.tokens")
    if not isinstance(tokens_model, list) or not isinstance(tokens_draft, list):
        return "a GGUF without a token list (tokenizer.ggml.tokens)"
    if len(tokens_model) != len(tokens_draft):
        return f"the draft has {len(tokens_draft)} tokens, the model {len(tokens_model)}"
    for i, (a, b) in enumerate(zip(tokens_model, tokens_draft, strict=True)):
        if a != b:
            return f"token {i} is {_show(b)} in the draft but {_show(a)} in the model"
    return None


def _show(value: Any) -> str:
    return "unset" if value is None else repr(value)
