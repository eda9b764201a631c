"""Finding GGUF files and naming them: the header peek, the store's naming rules, the folder layouts of other tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ui.gguf_peek import NotAModel, peek, why_not_importable
from ui.gguf_scan import default_sources, hf_cache, repo_of, scan
from ui.model_names import canonical, name_problem, propose, unique


def test_peek_reads_what_a_model_is(tiny_model_path: Path, tiny_projector_path: Path) -> None:
    s = peek(tiny_model_path)
    assert s.architecture == "llama" and s.split_count == 1 and s.parameters > 0 and s.file_type
    assert why_not_importable(s) == ""
    assert "vision projector" in why_not_importable(peek(tiny_projector_path))


def test_peek_refuses_broken_files_with_a_reason(tmp_path: Path, tiny_model_path: Path) -> None:
    text = tmp_path / "a.gguf"
    text.write_text("hello")
    with pytest.raises(NotAModel, match="not a GGUF file"):
        peek(text)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model_path.read_bytes()[:200])
    with pytest.raises(NotAModel, match="ends inside its header|claims more entries"):
        peek(cut)
    lying = tmp_path / "lying.gguf"
    lying.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (10**12).to_bytes(8, "little"))
    with pytest.raises(NotAModel, match="claims more entries"):
        peek(lying)
    with pytest.raises(NotAModel, match="cannot be read"):
        peek(tmp_path / "missing.gguf")


@pytest.mark.parametrize(
    ("file", "repo", "file_type", "name"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "", "", "llama-3.2-1b-instruct:q4_k_m"),
        ("qwen2.5-0.5b-instruct-q8_0.gguf", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "", "qwen2.5-0.5b-instruct:q8_0"),
        ("model-00001-of-00002.gguf", "", "", "model"),
        ("My Model (final)!.gguf", "", "F16", "my-model-final:f16"),
        ("..hidden.gguf", "", "", "hidden"),
    ],
)
def test_a_proposed_name_is_valid(file: str, repo: str, file_type: str, name: str) -> None:
    assert propose(file, repo, file_type) == name
    assert name_problem(name) == ""


def test_names_follow_the_stores_rules_and_compare_as_ollama_does() -> None:
    assert name_problem("") == "give the model a name"
    assert "the model 'a b'" in name_problem("a b")
    assert "the tag" in name_problem("x:-y")
    assert "at most three parts" in name_problem("a/b/c/d")
    assert name_problem("host.example:5000/team/model:v1") == ""
    assert canonical("Tiny") == canonical("tiny:latest") == canonical("registry.ollama.ai/library/tiny:latest")
    assert unique("tiny:q8_0", {"tiny:q8_0", "tiny-2:q8_0"}) == "tiny-3:q8_0"


def test_sources_follow_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert hf_cache({"HF_HUB_CACHE": "/x/hub", "HF_HOME": "/y"}, home) == Path("/x/hub")
    assert hf_cache({"HF_HOME": "/y"}, home) == Path("/y/hub")
    assert hf_cache({}, home) == home / ".cache" / "huggingface" / "hub"
    labels = [s.label for s in default_sources({}, home)]
    assert labels == ["Hugging Face cache", "LM Studio", "LM Studio", "GPT4All", "Downloads"]


def test_lm_studio_and_downloads_layouts(tmp_path: Path, tiny_model_path: Path) -> None:
    home = tmp_path / "home"
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-GGUF"
    lms.mkdir(parents=True)
    shutil.copyfile(tiny_model_path, lms / "Tiny-Q4_K_M.gguf")
    downloads = home / "Downloads"
    (downloads / "deep" / "deeper" / "deepest").mkdir(parents=True)
    shutil.copyfile(tiny_model_path, downloads / "deep" / "deeper" / "deepest" / "too-deep.gguf")  # past depth 2
    (downloads / "tiny-again.gguf").symlink_to(lms / "Tiny-Q4_K_M.gguf")  # the same file: listed once
    sources = default_sources({}, home)
    found = scan(sources)
    assert [(f.source, f.repo, f.proposed) for f in found] == [
        ("LM Studio", "lmstudio-community/Tiny-GGUF", "tiny:q4_k_m")
    ]
    assert repo_of(lms / "Tiny-Q4_K_M.gguf", sources[1]) == "lmstudio-community/Tiny-GGUF"
    # cancelled: stops at once
    assert scan(sources, cancelled=lambda: True) == []
