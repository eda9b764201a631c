"""Images in, embeddings out: a projector ("mmproj") driven through llama.cpp's libmtmd.

libmtmd decodes the image bytes (PNG, JPEG, BMP, GIF: stb_image), preprocesses them the way
the projector expects, runs the vision tower, and decodes the resulting embeddings into a
sequence of the shared llama context. The engine keeps doing everything else: slots,
batching of text, sampling. Like the rest of `server/runner`, only the engine thread calls in.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L
import llama_cpp.mtmd_cpp as M

from server.runner.backend import BackendError, Context, LogSink, Model
from server.runner.media import ImageSpan, sentinel, split_markers

_CHUNK_TEXT = 0


class ImageError(ValueError):
    """The request's images cannot be used (undecodable bytes, a marker without an image)."""


@dataclass
class VisionPrompt:
    """A prompt tokenized with its images: positions (tokens, and sentinels where image
    embeddings go), the images' spans, and the native chunks the spans point into."""

    tokens: list[int]
    spans: list[ImageSpan]
    _chunks: Any = field(default=None, repr=False)

    def close(self) -> None:
        if self._chunks:
            M.mtmd_input_chunks_free(self._chunks)
            self._chunks = None


class Vision:
    """A loaded projector bound to its text model."""

    def __init__(
        self, path: str, model: Model, *, n_threads: int, use_gpu: bool, flash_attention: bool | None, log: LogSink
    ) -> None:
        # libmtmd logs through its own hook; send it where llama.cpp's log goes
        M.mtmd_log_set(log.callback, ctypes.c_void_p(0))
        M.mtmd_helper_log_set(log.callback, ctypes.c_void_p(0))
        params = M.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.warmup = False
        if flash_attention is not None:
            params.flash_attn_type = 1 if flash_attention else 0
        ptr = M.mtmd_init_from_file(path.encode(), model.ptr, params)
        if not ptr:
            raise BackendError(f"llama.cpp could not load the projector {path}")
        self.ptr = ptr
        self.model = model
        if not M.mtmd_support_vision(ptr):
            self.close()
            raise BackendError(f"the projector {path} has no vision encoder")

    def prompt(self, text: str, images: Sequence[bytes], *, parse_special: bool) -> VisionPrompt:
        """Tokenize `text`, putting image n's embeddings where `[img-n]` stands."""
        try:
            texts, order = split_markers(text, len(images))
        except ValueError as exc:
            raise ImageError(str(exc)) from None
        bitmaps: dict[int, Any] = {}
        chunks = M.mtmd_input_chunks_init()
        try:
            for index in order:
                if index not in bitmaps:
                    bitmaps[index] = self._bitmap(images[index], index)
            keep: list[Any] = []  # the ctypes objects the part array points into
            parts: list[Any] = []
            for i, piece in enumerate(texts):
                if piece:
                    data = piece.encode("utf-8")
                    item = M.mtmd_input_text(
                        text=data, text_len=len(data), add_special=False, parse_special=parse_special
                    )
                    part = M.mtmd_input_part(text=ctypes.pointer(item), bitmap=None)
                    keep += [data, item]
                    parts.append(part)
                if i < len(order):
                    parts.append(M.mtmd_input_part(text=None, bitmap=bitmaps[order[i]]))
            array = (ctypes.POINTER(M.mtmd_input_part) * len(parts))(*[ctypes.pointer(p) for p in parts])
            rc = M.mtmd_tokenize_from_parts(self.ptr, chunks, array, len(parts), True)
            if rc != 0:
                raise ImageError(f"the images could not be prepared for the model (libmtmd status {rc})")
            prompt = self._positions(chunks)
        except BaseException:
            M.mtmd_input_chunks_free(chunks)
            raise
        finally:
            for bitmap in bitmaps.values():
                M.mtmd_bitmap_free(bitmap)
        return prompt

    def _bitmap(self, data: bytes, index: int) -> Any:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = M.mtmd_helper_bitmap_init_from_buf(self.ptr, buf, len(data), False, M.mtmd_helper_init_opt_default())
        if not bitmap:
            raise ImageError(f"image {index} could not be decoded (supported: PNG, JPEG, BMP, GIF)")
        return bitmap

    def _positions(self, chunks: Any) -> VisionPrompt:
        tokens: list[int] = []
        spans: list[ImageSpan] = []
        for i in range(M.mtmd_input_chunks_size(chunks)):
            chunk = M.mtmd_input_chunks_get(chunks, i)
            if M.mtmd_input_chunk_get_type(chunk) == _CHUNK_TEXT:
                n = ctypes.c_size_t(0)
                ptr = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens += [int(ptr[j]) for j in range(n.value)]
                continue
            # positions, not embeddings: M-RoPE models place many embeddings on few positions
            n_pos = int(M.mtmd_input_chunk_get_n_pos(chunk))
            raw_id = M.mtmd_input_chunk_get_id(chunk)
            image_id = raw_id.decode() if raw_id else f"{i:x}"
            spans.append(ImageSpan(start=len(tokens), length=n_pos, chunk=chunk))
            tokens += [sentinel(image_id)] * n_pos
        return VisionPrompt(tokens, spans, chunks)

    def eval(self, ctx: Context, span: ImageSpan, *, n_past: int, seq_id: int, n_batch: int, logits_last: bool) -> None:
        """Encode one image and decode its embeddings into `seq_id` from position `n_past`.

        With `logits_last` (the prompt ends with this image) the last embedding is decoded
        once more, alone, with logits on: libmtmd never asks for logits on image embeddings.
        Re-decoding the last position yields the same KV entry, since nothing follows it.
        """
        if logits_last and M.mtmd_decode_use_mrope(self.ptr):
            raise ImageError("this model cannot end a prompt with an image; put text after it")
        new_past = L.llama_pos(0)
        rc = M.mtmd_helper_eval_chunk_single(
            self.ptr, ctx.ptr, span.chunk, n_past, seq_id, n_batch, False, ctypes.byref(new_past)
        )
        if rc != 0:
            raise BackendError(f"the image could not be encoded (libmtmd status {rc})")
        if logits_last:
            self._decode_last_embedding(ctx, span, n_past + span.length - 1, seq_id)

    def _decode_last_embedding(self, ctx: Context, span: ImageSpan, pos: int, seq_id: int) -> None:
        n_embd = int(L.llama_model_n_embd_inp(self.model.ptr))
        n_tokens = int(M.mtmd_input_chunk_get_n_tokens(span.chunk))
        embd = M.mtmd_get_output_embd(self.ptr)
        batch = L.llama_batch_init(1, n_embd, 1)
        try:
            ctypes.memmove(batch.embd, ctypes.addressof(embd.contents) + (n_tokens - 1) * n_embd * 4, n_embd * 4)
            batch.pos[0] = pos
            batch.n_seq_id[0] = 1
            batch.seq_id[0][0] = seq_id
            batch.logits[0] = True
            batch.n_tokens = 1
            ctx.seq_rm(seq_id, pos, pos + 1)
            rc = int(L.llama_decode(ctx.ptr, batch))
        finally:
            L.llama_batch_free(batch)
        if rc != 0:
            raise BackendError(f"llama_decode failed with status {rc} after the image")

    def close(self) -> None:
        if self.ptr:
            M.mtmd_free(self.ptr)
            self.ptr = None
