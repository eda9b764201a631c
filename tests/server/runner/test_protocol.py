"""Framing and message round-trips: plain objects, no pipes or processes."""

from __future__ import annotations

import io
import json
import queue

import pytest

from server.runner import messages as m
from server.runner.main import Writer
from server.runner.protocol import DecodedFrame, FrameDecoder, FrameError, encode

SAMPLES = [
    m.Load(m.LoadOptions(model_path="/m/x.gguf", num_ctx=2048, num_parallel=4, lora_paths=("/a", "/b"))),
    m.Completion(
        7,
        m.CompletionRequest(
            prompt="hi\nthere", stop=("\n\n", "User:"), grammar='root ::= "x"', logprobs=True, top_logprobs=3, seed=42
        ),
    ),
    m.Completion(8, m.CompletionRequest(prompt=(1, 2, 3))),
    m.Embed(9, ("a", "b"), truncate=False, normalize=False, dimensions=16),
    m.Tokenize(10, "héllo ✓", add_special=False),
    m.Detokenize(11, (1, 2, 3)),
    m.Cancel(12),
    m.Health(13),
    m.Piece(7, "x\u00e9", ({"token": "x", "logprob": -0.5, "bytes": [120]},)),
    m.Done(
        7,
        "stop",
        content="tail",
        prompt_eval_count=3,
        prompt_eval_duration=10,
        eval_count=2,
        eval_duration=20,
        context=(1, 2, 3, 4),
    ),
    m.Embedded(9, ((0.5, -0.25), (1.0, 0.0)), 5),
    m.Tokens(10, (1, 2)),
    m.Text(11, "abc"),
    m.HealthReply(13, "ok", 1, 2),
    m.Error(0, "boom", "bad_request"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda msg: type(msg).__name__)
def test_round_trip(msg: object) -> None:
    frame = encode(msg)
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    [back] = FrameDecoder().feed(frame)
    assert back == msg


def test_runner_info_round_trip() -> None:
    info = m.RunnerInfo(
        model_path="/m",
        architecture="llama",
        description="d",
        n_ctx=2048,
        n_ctx_total=8192,
        n_ctx_train=4096,
        num_parallel=4,
        n_batch=512,
        n_threads=2,
        n_vocab=100,
        n_embd=64,
        n_layer=2,
        bos=1,
        eos=None,
        add_bos=True,
        pooling="none",
        embedding_only=False,
        can_shift=True,
        vision=False,
        weights_bytes=1,
        kv_bytes=2,
        compute_bytes=3,
        size=6,
        size_vram=0,
        load_duration=5,
        pid=123,
    )
    [back] = FrameDecoder().feed(encode(m.Loaded(info)))
    assert back == m.Loaded(info)
    assert back.info.memory_total == 6


def test_byte_at_a_time_and_many_per_read() -> None:
    stream = b"".join(encode(msg) for msg in SAMPLES)
    decoder = FrameDecoder()
    out: list[object] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == SAMPLES
    assert decoder.pending == 0
    assert FrameDecoder().feed(stream) == SAMPLES


def test_partial_frame_is_held() -> None:
    frame = encode(m.Cancel(3))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:-3]) == []
    assert decoder.pending == len(frame) - 3
    assert decoder.feed(frame[-3:]) == [m.Cancel(3)]


def test_bad_frames_are_reported_not_fatal() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(
        b"not json\n"
        + json.dumps({"type": "nope"}).encode()
        + b"\n"
        + json.dumps({"type": "cancel"}).encode()
        + b"\n\n"
        + encode(m.Health(1))
    )
    assert [type(x) for x in out] == [DecodedFrame, DecodedFrame, DecodedFrame, m.Health]
    assert "unknown message type" in out[1].error
    assert "Cancel" in out[2].error


def test_oversized_frame_raises() -> None:
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(FrameError):
        decoder.feed(b"x" * 200)


def test_messages_are_frozen() -> None:
    msg = m.Cancel(1)
    with pytest.raises(AttributeError):
        msg.id = 2  # type: ignore[misc]


def test_coalesce_merges_each_completions_consecutive_pieces() -> None:
    lp = [{"token": t, "logprob": -1.0, "bytes": [ord(t)]} for t in "abcd"]
    msgs = [
        m.Piece(1, "a", (lp[0],), 1),
        m.Piece(2, "x", None, 1),
        m.Piece(1, "b", (lp[1],), 2),
        m.Piece(2, "y", None, 2),
        m.Piece(1, "c", (lp[2],), 3),
        m.Done(2, "stop", eval_count=2),
        m.Piece(2, "z", None, 3),  # after its Done: not merged across it (a new stream of that id)
        m.Piece(1, "d", (lp[3],), 4),
        m.Tokens(3, (1, 2)),
    ]
    out = m.coalesce(msgs)
    assert out == [
        m.Piece(1, "abcd", tuple(lp), 4),
        m.Piece(2, "xy", None, 2),
        m.Done(2, "stop", eval_count=2),
        m.Piece(2, "z", None, 3),
        m.Tokens(3, (1, 2)),
    ]
    # every message of one id keeps its order, and no text is lost
    for rid in (1, 2, 3):
        assert "".join(getattr(x, "content", "") for x in out if x.id == rid) == "".join(
            getattr(x, "content", "") for x in msgs if x.id == rid
        )


def test_coalesce_keeps_a_piece_after_an_error_of_its_id_apart() -> None:
    msgs = [m.Piece(1, "a", None, 1), m.Error(1, "boom"), m.Piece(1, "b", None, 2)]
    assert m.coalesce(msgs) == msgs
    assert m.coalesce([]) == []


class _Writes(io.BytesIO):
    """A real in-memory file that also keeps each `write` call apart."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.calls.append(bytes(data))
        return super().write(data)


def test_writer_sends_what_queued_up_in_one_write_with_a_steps_list_flattened() -> None:
    """The engine hands over a step's messages as one list; the writer takes lists and single
    messages (health replies) alike, in order, and merges a completion's pieces across them."""
    outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
    outbox.put([m.Piece(1, "a", None, 1), m.Piece(2, "x", None, 1)])  # one step
    outbox.put(m.HealthReply(5, "ok", active=2))
    outbox.put([m.Piece(1, "b", None, 2), m.Done(2, "stop", eval_count=1)])  # the next
    outbox.put(None)
    out = _Writes()
    writer = Writer(out, outbox)  # type: ignore[arg-type]
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert len(out.calls) == 1
    assert list(FrameDecoder().feed(out.getvalue())) == [
        m.Piece(1, "ab", None, 2),
        m.Piece(2, "x", None, 1),
        m.HealthReply(5, "ok", active=2),
        m.Done(2, "stop", eval_count=1),
    ]
