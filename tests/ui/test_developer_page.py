"""The Developer page against a live server: a request shows in the table with its tokens, a log line in the tail."""

from __future__ import annotations

import ollama


def test_a_request_and_its_log_line_show(qtbot, desktop, server) -> None:
    page = desktop.show_page("developer")
    answer = ollama.Client(host=server.url).generate(
        model="tiny", prompt="Hello", options={"num_predict": 4, "temperature": 0}
    )
    page.poll()

    def shown() -> bool:
        page.poll()
        return any(r[1:5] == ("POST", "/api/generate", "tiny", "200") for r in page.request_rows()) and any(
            "POST /api/generate 200" in line for line in page.log_lines()
        )

    qtbot.waitUntil(shown, timeout=20_000)
    row = next(r for r in page.request_rows() if r[2] == "/api/generate")
    assert row[5:7] == (str(answer.prompt_eval_count), "4") and row[7].endswith(("ms", "s"))
    line = next(line for line in page.log_lines() if "POST /api/generate 200" in line)
    assert " INFO " in line and "pollama.request" in line
    # the page's own polling is in neither
    assert not any("/api/pollama/" in r[2] for r in page.request_rows())
    assert not any("/api/pollama/logs" in line for line in page.log_lines())
    # each poll brings only what is new: the same request is not listed twice (the app's own
    # requests, such as its running-models monitor, may add rows meanwhile)
    page.poll()
    qtbot.wait(300)
    page.poll()
    qtbot.wait(300)
    assert sum(r[2] == "/api/generate" for r in page.request_rows()) == 1
    # a level above info: the request lines go, and new ones do not come
    page.level_combo.setCurrentIndex(2)  # Warning
    qtbot.waitUntil(lambda: "logs" not in page._calls, timeout=10_000)
    assert not any("pollama.request" in line for line in page.log_lines())


def test_polling_stops_when_the_page_is_not_shown(qtbot, desktop) -> None:
    page = desktop.show_page("developer")
    assert page.timer.isActive()
    desktop.show_page("library")
    assert not page.timer.isActive()
