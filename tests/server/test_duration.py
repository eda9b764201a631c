import math

import pytest

from server.duration import DurationError, format_go_duration, parse_env_duration, parse_go_duration, parse_keep_alive


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("5m", 300),
        ("1h30m", 5400),
        ("300ms", 0.3),
        ("0", 0),
        ("-1s", -1),
        ("1.5h", 5400),
        ("2h45m10.5s", 9910.5),
        ("10us", 1e-5),
    ],
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["300", "", "5x", "m5", "1h 2m", "abc"])
def test_parse_go_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_go_duration(text)


def test_unitless_string_names_the_missing_unit() -> None:
    with pytest.raises(DurationError, match="missing unit"):
        parse_go_duration("300")


def test_keep_alive_forms() -> None:
    assert parse_keep_alive(300) == 300
    assert parse_keep_alive(1.5) == 1.5
    assert parse_keep_alive("5m") == 300
    assert parse_keep_alive(-1) == math.inf
    assert parse_keep_alive("-1m") == math.inf
    assert parse_keep_alive(0) == 0
    bads: tuple[object, ...] = (True, [], {}, "300", float("nan"))
    for bad in bads:
        with pytest.raises(DurationError):
            parse_keep_alive(bad)


def test_a_keep_alive_longer_than_gos_longest_duration_is_forever() -> None:
    assert parse_keep_alive(1e300) == math.inf
    assert parse_keep_alive(2**63) == math.inf
    assert parse_keep_alive(9.3e9) == math.inf  # past MaxInt64 nanoseconds (~292 years)
    assert parse_keep_alive(9.2e9) == 9.2e9
    assert parse_env_duration("99999999999") == math.inf


@pytest.mark.parametrize("text", ["2562048h", "9223372037s", "99999999999999999999ns"])
def test_a_duration_string_that_overflows_is_gos_parse_error(text: str) -> None:
    with pytest.raises(DurationError, match=f'time: invalid duration "{text}"'):
        parse_keep_alive(text)
    assert parse_go_duration("2562047h") == 2562047 * 3600  # the largest whole hour Go accepts


def test_env_duration_accepts_plain_seconds() -> None:
    assert parse_env_duration("300") == 300
    assert parse_env_duration("-1") == math.inf
    assert parse_env_duration("10m") == 600


@pytest.mark.parametrize(
    "seconds, text", [(300, "5m0s"), (3600, "1h0m0s"), (0.3, "300ms"), (0, "0s"), (90.5, "1m30.5s"), (math.inf, "-1")]
)
def test_format_go_duration(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text
