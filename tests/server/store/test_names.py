import pytest

from server.errors import InvalidModelName
from server.store.names import Name


@pytest.mark.parametrize(
    "text, parts, display",
    [
        ("llama3.2", ("registry.ollama.ai", "library", "llama3.2", "latest"), "llama3.2:latest"),
        ("llama3.2:1b", ("registry.ollama.ai", "library", "llama3.2", "1b"), "llama3.2:1b"),
        ("me/m", ("registry.ollama.ai", "me", "m", "latest"), "me/m:latest"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        ),
        ("localhost:5000/a/b:c", ("localhost:5000", "a", "b", "c"), "localhost:5000/a/b:c"),
        ("http://localhost:5000/a/b", ("localhost:5000", "a", "b", "latest"), "localhost:5000/a/b:latest"),
        ("REGISTRY.ollama.ai/library/x:y", ("REGISTRY.ollama.ai", "library", "x", "y"), "x:y"),
    ],
)
def test_parse_and_display(text: str, parts: tuple[str, ...], display: str) -> None:
    name = Name.parse(text)
    assert name.parts == parts
    assert name.display == display


def test_scheme_is_kept() -> None:
    assert Name.parse("http://localhost:5000/a/b").scheme == "http"
    assert Name.parse("a").scheme == "https"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "../x",
        "a/../../x",
        "x/",
        "/x",
        ":tag",
        "model:",
        "a//b",
        "bad name",
        "ns.with.dots/model",
        "-leading",
        ".hidden",
        "model:tag:extra/x",
        "x" * 81,
        "model:" + "t" * 81,
        "a\\b",
        "m\x00",
        "naïve",
    ],
)
def test_invalid_names(text: str) -> None:
    with pytest.raises(InvalidModelName):
        Name.parse(text)


def test_part_lengths_at_the_limit() -> None:
    assert Name.parse("m" * 80 + ":" + "t" * 80).is_valid
    assert Name.parse("h" * 350 + "/n/m").is_valid
    assert not Name.parse_lenient("h" * 351 + "/n/m").is_valid


def test_same_as_ignores_case() -> None:
    assert Name.parse("Foo/Bar:Latest").same_as(Name.parse("foo/bar:latest"))
    assert not Name.parse("foo/bar:a").same_as(Name.parse("foo/bar:b"))
