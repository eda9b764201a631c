"""Human units, times and tables as `ollama` prints them (Ollama's `format/bytes.go`, `format/time.go`, `cmd/cmd.go`)."""

from __future__ import annotations

import datetime as dt

import pytest

from app.formatting import (
    go_g,
    head_lines,
    human_bytes,
    human_duration,
    human_number,
    human_time,
    metrics_summary,
    processor,
    table,
    until,
)

NOW = dt.datetime(2026, 8, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1500, "1.5 KB"),
        (844_881, "844 KB"),
        (1_000_000, "1 MB"),
        (2_019_377_376, "2.0 GB"),
        (4_920_753_328, "4.9 GB"),
        (10_500_000_000, "10 GB"),
        (1_300_000_000_000, "1.3 TB"),
    ],
)
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (8_000_000_000, "8B"),
        (3_212_749_888, "3.2B"),
        (137_000_000, "137M"),
        (22_570_000, "22.57M"),
        (500_000, "500K"),
        (999, "999"),
    ],
)
def test_human_number(n: int, text: str) -> None:
    assert human_number(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5400, "2 hours"),  # Go rounds half away from zero
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (13 * 86400, "13 days"),
        (14 * 86400, "2 weeks"),
        (59 * 86400, "8 weeks"),
        (60 * 86400, "2 months"),
        (729 * 86400, "24 months"),
        (730 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_time_past_future_zero_and_forever() -> None:
    assert human_time(NOW - dt.timedelta(days=21), now=NOW) == "3 weeks ago"
    assert human_time(NOW + dt.timedelta(minutes=4, seconds=30), now=NOW) == "4 minutes from now"
    assert human_time("0001-01-01T00:00:00Z", now=NOW) == "Never"
    assert human_time(None, "Never", now=NOW) == "Never"
    assert human_time("2318-08-01T12:00:00.123456789Z", now=NOW) == "Forever"
    assert human_time("2026-08-01T12:59:59.5+01:00", now=NOW) == "Less than a second ago"


def test_until_column() -> None:
    assert until("2026-08-01T12:04:30Z", now=NOW) == "4 minutes from now"
    assert until("2026-08-01T11:59:59Z", now=NOW) == "Stopping..."
    assert until("2318-08-01T12:00:00Z", now=NOW) == "Forever"


def test_processor_column() -> None:
    assert processor(1000, 0) == "100% CPU"
    assert processor(1000, 1000) == "100% GPU"
    assert processor(1000, 520) == "48%/52% CPU/GPU"
    assert processor(1000, 2000) == "Unknown"


def test_table_is_tablewriter_without_borders() -> None:
    text = table(
        [["llama3.2:latest", "a80c4f17acd5", "2.0 GB", "2 weeks ago"], ["x:1", "0123456789ab", "12 MB", "Never"]],
        ["NAME", "ID", "SIZE", "MODIFIED"],
    )
    assert text == (
        "NAME               ID              SIZE      MODIFIED    \n"  # last header cell + one space
        "llama3.2:latest    a80c4f17acd5    2.0 GB    2 weeks ago    \n"
        "x:1                0123456789ab    12 MB     Never          \n"
    )
    # What scripts do with it.
    rows = [line.split() for line in text.splitlines()[1:]]
    assert [r[0] for r in rows] == ["llama3.2:latest", "x:1"]


def test_table_header_only() -> None:
    assert table([], ["NAME", "ID", "SIZE", "MODIFIED"]) == "NAME    ID    SIZE    MODIFIED \n"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2048.0, "2048"),
        (1e6, "1e+06"),
        (205120.0, "205120"),
        (3212749888.0, "3.212749888e+09"),
        (0.9, "0.9"),
        (1e-05, "1e-05"),
        (0.0001, "0.0001"),
        (-2.5, "-2.5"),
    ],
)
def test_go_g(value: float, text: str) -> None:
    assert go_g(value) == text


def test_metrics_summary_matches_ollama() -> None:
    text = metrics_summary(
        {
            "total_duration": 512345678,
            "load_duration": 2345678,
            "prompt_eval_count": 26,
            "prompt_eval_duration": 130000000,
            "eval_count": 290,
            "eval_duration": 4700000000,
        }
    )
    assert text == (
        "total duration:       512.345678ms\n"
        "load duration:        2.345678ms\n"
        "prompt eval count:    26 token(s)\n"
        "prompt eval duration: 130ms\n"
        "prompt eval rate:     200.00 tokens/s\n"
        "eval count:           290 token(s)\n"
        "eval duration:        4.7s\n"
        "eval rate:            61.70 tokens/s\n"
    )
    assert metrics_summary({}) == ""


def test_head_lines() -> None:
    assert head_lines("MIT License\n\nCopyright\nPermission\n", 2) == ["MIT License", "Copyright", "..."]
    assert head_lines("  one  \n", 2) == ["one"]
