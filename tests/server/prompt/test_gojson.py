"""Go json.Marshal emulation."""

from __future__ import annotations

import pytest

from server.prompt.gojson import GoJSONError, OrderedJSONMap, go_float, go_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (123456789.0, "123456789"),
        (1e100, "1e+100"),
        (2.5e-10, "2.5e-10"),
    ],
)
def test_floats(value: float, expected: str) -> None:
    assert go_float(value) == expected


def test_nan_is_refused() -> None:
    with pytest.raises(GoJSONError):
        go_json(float("nan"))


def test_maps_sorted_compact_html_escaped() -> None:
    value = {"b": [1, 2.0, None, True], "a": '<x> & \u2028 é \n"', "c": {}}
    assert go_json(value) == '{"a":"\\u003cx\\u003e \\u0026 \\u2028 é \\n\\"","b":[1,2,null,true],"c":{}}'


def test_ordered_map_keeps_order_and_bad_surrogates_become_fffd() -> None:
    assert go_json(OrderedJSONMap(z=1, a=2)) == '{"z":1,"a":2}'
    assert go_json("a\ud800b") == '"a\ufffdb"'
