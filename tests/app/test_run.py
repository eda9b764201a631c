"""`pollama run` without a terminal: one-shot prompts, piped stdin, stats, formats, embeddings; `ps`/`stop`."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from pathlib import Path

import pytest

from app.client import ClientError
from app.session import extract_images
from tests.app.conftest import CLI, require_endpoint, require_generation

ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def generation(server, tiny: str) -> str:  # type: ignore[no-untyped-def]
    require_generation(server)
    return tiny


def test_one_shot_prompt(cli: CLI, generation: str) -> None:
    result = cli.ok("run", "tiny", "Why is the sky blue?")
    assert result.stdout.endswith("\n\n")
    assert result.stdout.strip(), "the model said nothing"
    assert not ANSI.search(result.stdout), "no terminal codes when stdout is a pipe"
    assert result.stderr == ""


def test_piped_stdin_is_the_prompt(cli: CLI, generation: str) -> None:
    result = cli.ok("run", "tiny", input="Summarize this file.\n")
    assert result.stdout.endswith("\n\n") and result.stdout.strip()
    with_prompt = cli.ok("run", "tiny", "and this", input="some document\n")
    assert with_prompt.stdout.strip()


def test_verbose_prints_timings(cli: CLI, generation: str) -> None:
    result = cli.ok("run", "tiny", "--verbose", "hi")
    stats = result.stderr.splitlines()
    names = [line.split(":")[0] for line in stats]
    assert names[0] == "total duration" and "eval rate" in names
    assert "eval count:           4 token(s)" in stats  # PARAMETER num_predict 4
    assert re.search(r"^eval rate: +\d+\.\d\d tokens/s$", result.stderr, re.M)


def test_format_json(cli: CLI, generation: str) -> None:
    result = cli.ok("run", "tiny", "--format", "json", "give me json")
    assert result.stdout.lstrip().startswith("{")


def test_keepalive_ps_and_stop(cli: CLI, generation: str) -> None:
    cli.ok("run", "tiny", "--keepalive", "10m", "hi")
    lines = cli.ok("ps").stdout.splitlines()
    header = lines[0]
    assert re.fullmatch(r"NAME +ID +SIZE +PROCESSOR +CONTEXT +UNTIL +", header)
    starts = [header.index(c) for c in ("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")]
    row = next(line for line in lines[1:] if line.startswith("tiny:latest"))
    cells = [row[a:b].strip() for a, b in zip(starts, starts[1:] + [len(row)], strict=True)]
    assert re.fullmatch(r"[0-9a-f]{12}", cells[1])
    assert re.fullmatch(r"\d+(\.\d)? [KMG]B", cells[2])
    assert re.fullmatch(r"100% CPU|100% GPU|\d+%/\d+% CPU/GPU", cells[3])
    assert re.fullmatch(r"\d+", cells[4])
    assert cells[5] in ("9 minutes from now", "10 minutes from now")
    assert cli.ok("stop", "tiny").stdout == ""
    deadline = time.monotonic() + 30
    while "tiny:latest" in cli.ok("ps").stdout and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "tiny:latest" not in cli.ok("ps").stdout


def test_keepalive_zero_unloads_after_the_answer(cli: CLI, generation: str) -> None:
    cli.ok("run", "tiny", "--keepalive", "0", "hi")
    deadline = time.monotonic() + 30
    while "tiny:latest" in cli.ok("ps").stdout and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "tiny:latest" not in cli.ok("ps").stdout


def test_run_flag_errors(cli: CLI, generation: str) -> None:
    bad = cli.run("run", "tiny", "--keepalive", "soon", "hi")
    assert (bad.returncode, bad.stderr) == (1, 'Error: time: invalid duration "soon"\n')
    think = cli.run("run", "tiny", "--think=maybe", "hi")
    assert (think.returncode, think.stderr) == (
        1,
        'Error: invalid value for --think: "maybe" (must be true, false, high, medium, low, or max)\n',
    )
    unsupported = cli.run("run", "tiny", "--think", "hi")
    assert unsupported.returncode == 1 and "does not support thinking" in unsupported.stderr
    assert unsupported.stderr.startswith("Error: ")
    # `--think` never swallows the prompt, and `--think=false` is accepted by non-thinking models.
    assert cli.ok("run", "tiny", "--think=false", "--hidethinking", "hi").stdout.strip()


def test_unknown_model_is_an_error(cli: CLI, server) -> None:  # type: ignore[no-untyped-def]
    require_endpoint(server, "/api/pull")
    result = cli.run("run", "127.0.0.1:9/library/nothing-here", "--insecure", "hi", timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("Error: ")


def test_embedding_model_prints_a_vector(cli: CLI, server, bert: str) -> None:  # type: ignore[no-untyped-def]
    require_endpoint(server, "/api/embed")
    require_generation(server)
    result = cli.ok("run", "bert", "some text to embed")
    line = result.stdout.strip()
    assert "\n" not in line and " " not in line  # Go's json.Marshal: compact
    vector = json.loads(line)
    assert all(isinstance(x, (int, float)) for x in vector) and len(vector) > 8
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-3)
    cut = json.loads(cli.ok("run", "bert", "--dimensions", "8", "some text").stdout)
    assert len(cut) == 8
    empty = cli.run("run", "bert")
    assert (empty.returncode, empty.stderr) == (
        1,
        'Error: embedding models require input text. Usage: pollama run bert "your text here"\n',
    )


def test_image_paths_in_a_prompt_are_attached(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    (tmp_path / "my pic.png").write_bytes(png)
    text, images = extract_images(f"what is in {tmp_path}/my\\ pic.png ?")
    assert text == "what is in  ?".replace("  ", "  ").strip() or text.startswith("what is in")
    assert images == [base64.b64encode(png).decode()]
    assert "Added image" in capsys.readouterr().err
    untouched, none = extract_images("no /such/file.png here")
    assert (untouched, none) == ("no /such/file.png here", [])
    (tmp_path / "fake.jpg").write_bytes(b"not an image")
    with pytest.raises(ClientError, match="invalid image type"):
        extract_images(f"look {tmp_path}/fake.jpg")


def test_vision_model_from_two_from_lines(cli: CLI, tiny_model_path: Path, tiny_projector_path: Path) -> None:
    """A Modelfile with the model and its projector; `run` attaches an image path from the prompt."""
    from tests.fixtures.images import checkerboard, gradient

    folder = cli.cwd / "seer"
    folder.mkdir(exist_ok=True)
    (folder / "Modelfile").write_text(
        f"FROM {tiny_model_path}\nFROM {tiny_projector_path}\nPARAMETER num_predict 6\nPARAMETER temperature 0\n"
    )
    cli.ok("create", "seer", "-f", str(folder / "Modelfile"))
    shown = cli.ok("show", "seer").stdout
    assert "Projector" in shown and "vision" in shown
    (cli.cwd / "a.png").write_bytes(gradient())
    (cli.cwd / "b.png").write_bytes(checkerboard())
    first = cli.ok("run", "seer", "what is in ./a.png")
    assert "Added image './a.png'" in first.stderr and first.stdout.strip()
    assert cli.ok("run", "seer", "what is in ./a.png").stdout == first.stdout
    assert cli.ok("run", "seer", "what is in ./b.png").stdout != first.stdout
