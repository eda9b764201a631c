"""Incremental detokenizing: split UTF-8 and stop strings never leak."""

from __future__ import annotations

from server.runner.detokenize import TextStream, held_prefix_len


def run(pieces: list[bytes], stops: tuple[str, ...] = ()) -> tuple[list[str], bool]:
    stream = TextStream(stops)
    out: list[str] = []
    for piece in pieces:
        emit = stream.push(piece)
        out.append(emit.text)
        if emit.stopped:
            return out, True
    out.append(stream.finish().text)
    return out, False


def test_held_prefix_len() -> None:
    assert held_prefix_len("hello wor", ("world",)) == 3
    assert held_prefix_len("hello", ("world",)) == 0
    assert held_prefix_len("ab", ("abc", "b")) == 2
    assert held_prefix_len("x", ()) == 0


def test_split_utf8_is_held_until_complete() -> None:
    euro = "€".encode()
    out, _ = run([b"a", euro[:1], euro[1:2], euro[2:], b"b"])
    assert out == ["a", "", "", "€", "b", ""]


def test_incomplete_utf8_at_end_becomes_replacement() -> None:
    out, _ = run([b"a", "€".encode()[:2]])
    assert "".join(out) == "a\ufffd"


def test_stop_string_across_tokens_never_leaks() -> None:
    out, stopped = run([b"Hello", b" Us", b"er:", b" more"], ("User:",))
    assert stopped
    assert "".join(out) == "Hello "
    assert all("Us" not in chunk for chunk in out)


def test_false_alarm_is_released() -> None:
    out, stopped = run([b"Hello", b" Us", b"ing"], ("User:",))
    assert not stopped
    assert out == ["Hello", " ", "Using", ""]


def test_held_text_released_at_end() -> None:
    out, stopped = run([b"abc", b" Us"], ("User:",))
    assert not stopped and "".join(out) == "abc Us"


def test_stop_inside_one_token() -> None:
    out, stopped = run([b"abc\n\nxyz"], ("\n\n",))
    assert stopped and out == ["abc"]


def test_earliest_stop_wins() -> None:
    out, stopped = run([b"one two three"], ("three", "two"))
    assert stopped and out == ["one "]


def test_logprobs_follow_their_text() -> None:
    stream = TextStream(("STOP",))
    a = stream.push(b"ok", {"token": "ok"})
    assert a.text == "ok" and a.logprobs == [{"token": "ok"}]
    b = stream.push(b" ST", {"token": " ST"})
    assert b.text == " " and b.logprobs == [{"token": " ST"}]
    c = stream.push(b"OP", {"token": "OP"})
    assert c.stopped and c.text == "" and c.logprobs == []


def test_the_earliest_stop_is_the_one_reported() -> None:
    stream = TextStream(("world", "lo w"))
    assert stream.matched is None
    out = stream.push(b"hello world")
    assert out.stopped and out.text == "hel"
    assert stream.matched == "lo w"
    assert TextStream(("x",)).finish().stopped is False
