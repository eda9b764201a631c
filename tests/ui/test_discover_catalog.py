"""Discover's Ollama library list: the shipped catalog, its filters, and the page that shows them.

The filters are tested twice: as functions over the catalog, and through the real
widgets (typing, ticking) on a page talking to a live server, whose free memory
decides which sizes "fit".
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pytestqt.qtbot import QtBot

from tests.support.live_server import LiveServer
from ui.catalog import CAPABILITIES, CatalogFilter, filter_catalog, load_catalog, parse_catalog
from ui.resources import resource_path

GB = 1_000_000_000


def names(rows: list) -> list[str]:
    return [r.model.name for r in rows]


def test_the_shipped_catalog_lists_popular_models_with_sizes() -> None:
    catalog = load_catalog()
    by_name = {m.name: m for m in catalog.models}
    assert 30 <= len(by_name) <= 60
    for wanted in ("llama3.2", "qwen3", "gemma3", "mistral", "phi4", "deepseek-r1", "nomic-embed-text", "gpt-oss"):
        assert wanted in by_name, wanted
    # every entry of the file made it (none was skipped as broken)
    raw = json.loads(resource_path("catalog.json").read_text(encoding="utf-8"))
    assert len(raw["models"]) == len(catalog.models)
    for model in catalog.models:
        assert model.description and model.context_length > 0, model.name
        assert model.tags and all(t.size > 10_000_000 for t in model.tags), model.name
        assert model.default_tag in {t.tag for t in model.tags}
        assert set(model.capabilities) <= set(CAPABILITIES), model.name
    assert by_name["nomic-embed-text"].capabilities == ("embedding",)
    assert {"tools", "thinking"} <= set(by_name["qwen3"].capabilities)
    assert catalog.source == "knowledge" and "make_catalog.py" in catalog.about  # where the numbers come from


def test_filters_by_words_capabilities_and_size() -> None:
    models = load_catalog().models
    assert names(filter_catalog(models, CatalogFilter("QWEN3"))) == ["qwen3", "qwen3-coder", "qwen3-embedding"]
    assert names(filter_catalog(models, CatalogFilter("qwen embed"))) == ["qwen3-embedding"]
    assert filter_catalog(models, CatalogFilter("no such model anywhere")) == []
    vision = filter_catalog(models, CatalogFilter(capabilities=frozenset({"vision"})))
    assert "llava" in names(vision) and "qwen3" not in names(vision)
    both = filter_catalog(models, CatalogFilter(capabilities=frozenset({"vision", "tools"})))
    assert set(names(both)) < set(names(vision)) and "mistral-small3.2" in names(both)
    small = filter_catalog(models, CatalogFilter("llama3", max_size=3 * GB))
    assert names(small) == ["llama3.2"]  # 3.1 and 3.3 have no size under 3 GB; 3.2-vision neither
    assert [t.tag for t in small[0].tags] == ["1b", "3b"]
    tiny = filter_catalog(models, CatalogFilter("qwen3", max_size=1 * GB))
    assert {r.model.name: [t.tag for t in r.tags] for r in tiny} == {"qwen3": ["0.6b"], "qwen3-embedding": ["0.6b"]}


def test_a_broken_entry_is_skipped_and_a_broken_file_is_an_empty_catalog(tmp_path: Path) -> None:
    text = json.dumps(
        {
            "models": [
                {"name": "good", "tags": [{"tag": "1b", "size": 123}], "default_tag": "nope"},
                {"name": "no-tags", "tags": []},
                {"description": "no name", "tags": [{"tag": "x", "size": 1}]},
            ]
        }
    )
    catalog = parse_catalog(text)
    assert [m.name for m in catalog.models] == ["good"] and catalog.models[0].default_tag == "1b"
    (tmp_path / "bad.json").write_text("{not json")
    assert load_catalog(tmp_path / "bad.json").models == ()


def test_the_page_filters_as_one_types_and_ticks(qtbot: QtBot, server: LiveServer, tmp_path: Path) -> None:
    from ui.client import ApiClient
    from ui.discover_page import DiscoverPage
    from ui.pull_manager import PullManager
    from ui.pull_state import PendingPulls

    client = ApiClient(server.url)
    page = DiscoverPage(client, PullManager(client, PendingPulls(tmp_path / "pulls.json")))
    qtbot.addWidget(page)
    everything = page.visible_catalog()
    assert len(everything) == len(load_catalog().models)

    qtbot.keyClicks(page.search_box, "gemma")
    assert [m for m, _ in page.visible_catalog()] == ["gemma3", "gemma3n", "codegemma", "embeddinggemma"]
    page.cap_boxes["vision"].click()
    assert page.visible_catalog() == [("gemma3", ["gemma3:270m", "gemma3:1b", "gemma3:4b", "gemma3:12b", "gemma3:27b"])]
    page.cap_boxes["vision"].click()
    page.search_box.clear()
    page.cap_boxes["embedding"].click()
    assert {m for m, _ in page.visible_catalog()} == {
        m.name for m in load_catalog().models if "embedding" in m.capabilities
    }
    page.cap_boxes["embedding"].click()

    # "only sizes that fit": against what the server says is free, every size of a row is checked
    with qtbot.waitSignal(page.devices_loaded, timeout=10_000) as loaded:
        page.activated()
    free = loaded.args[0]
    devices = httpx.get(server.url + "/api/pollama/devices", trust_env=False).json()
    assert 0 < free <= devices["system_memory"]["total"]
    page.fits_only.click()
    sizes = {m.pull_name(t.tag): t.size for m in load_catalog().models for t in m.tags}
    shown = [name for _, tags in page.visible_catalog() for name in tags]
    assert shown and all(sizes[n] <= free for n in shown)
    assert "llama3.1:405b" not in shown and len(shown) == sum(1 for s in sizes.values() if s <= free)
    # every shown row says whether it fits (a guess from its size until the server is asked)
    top = page.catalog_tree.topLevelItem(0)
    row = top.child(0) if top is not None else None
    assert row is not None and row.text(2).startswith("≈ ") and "80 %" in row.toolTip(2)
