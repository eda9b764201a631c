"""Every bundled template renders Ollama's golden prompts byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.prompt import ChatTemplate, render_chat
from tests.server.prompt.conftest import GOLDEN

USER = {"role": "user", "content": "Hello, how are you?"}
ASSISTANT = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
USER2 = {"role": "user", "content": "I'd like to show off how chat templating works!"}
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

CONVERSATIONS = {
    "user": [USER],
    "user-assistant-user": [USER, ASSISTANT, USER2],
    "system-user-assistant-user": [SYSTEM, USER, ASSISTANT, USER2],
}
# The README: for these, one trailing space at the very end is dropped before comparing.
TRAILING_SPACE = {"chatqa", "llama2-chat", "mistral-instruct", "openchat", "vicuna"}


def _cases() -> list[tuple[str, str]]:
    folder = GOLDEN / "testdata"
    if not folder.is_dir():
        return []
    return sorted((d.name, case.name) for d in folder.iterdir() if d.is_dir() for case in d.iterdir())


CASES = _cases()


def test_all_sixty_cases_present(golden: Path) -> None:
    assert len(CASES) == 60


@pytest.mark.parametrize(("template_file", "case"), CASES)
def test_golden_render(golden: Path, template_file: str, case: str) -> None:
    template = ChatTemplate.parse((golden / template_file).read_text(encoding="utf-8"))
    expected = (golden / "testdata" / template_file / case).read_text(encoding="utf-8")
    got = render_chat(template, CONVERSATIONS[case])
    name = template_file.removesuffix(".gotmpl")
    if name in TRAILING_SPACE and got.endswith(" "):
        got = got[:-1]
    assert got == expected


def test_package_ships_the_golden_templates(golden: Path) -> None:
    package = Path(__file__).resolve().parents[3] / "server" / "prompt" / "templates"
    for source in golden.glob("*.gotmpl"):
        assert (package / source.name).read_bytes() == source.read_bytes()
    for source in golden.glob("*.json"):
        assert (package / source.name).read_bytes() == source.read_bytes()
    assert not (package / "testdata").exists()
