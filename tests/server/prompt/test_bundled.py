"""Bundled templates and Jinja → bundled-name detection (Ollama's template.Named)."""

from __future__ import annotations

import json
from pathlib import Path

from server.prompt import ChatTemplate, bundled_template, bundled_templates, detect_bundled_template


def test_every_index_entry_maps_to_its_name(golden: Path) -> None:
    for entry in json.loads((golden / "index.json").read_text(encoding="utf-8")):
        found = detect_bundled_template(entry["template"])
        assert found is not None and found.name == entry["name"]


def test_every_templates_jsonl_entry_maps_to_its_name(golden: Path) -> None:
    lines = (golden / "testdata" / "templates.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 35
    for line in lines:
        ((name, jinja),) = json.loads(line).items()
        found = detect_bundled_template(jinja)
        assert found is not None and found.name == name, name


def test_unrelated_template_matches_nothing() -> None:
    assert detect_bundled_template("{{ messages }}" * 50) is None
    assert detect_bundled_template("") is None


def test_small_edits_still_match() -> None:
    chatml = next(t for t in bundled_templates() if t.name == "chatml")
    index = json.loads((Path(__file__).resolve().parents[3] / "server/prompt/templates/index.json").read_text())
    jinja = next(e["template"] for e in index if e["name"] == "chatml")
    found = detect_bundled_template(jinja.replace("assistant", "assistent", 1))
    assert found is not None and found.name == chatml.name


def test_bundled_templates_parse_and_carry_stop_lists() -> None:
    names = {t.name for t in bundled_templates()}
    assert len(names) == 20 and {"llama3-instruct", "vicuna", "command-r"} <= names
    for bundled in bundled_templates():
        ChatTemplate.parse(bundled.template_text)
        assert bundled.stop, bundled.name
    gemma3 = bundled_template("gemma3-instruct")
    assert gemma3 is not None and gemma3.parameters == {"stop": ["<end_of_turn>"], "temperature": 0.1}
