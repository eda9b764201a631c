"""Model management commands as subprocesses against a live server, output compared to Ollama's `cmd/cmd.go`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.cli import build_parser, main
from app.formatting import human_bytes
from tests.app.conftest import CLI, require_endpoint
from tests.support.live_server import REPO, free_port

COMMANDS = ["serve", "create", "show", "run", "stop", "pull", "push", "list", "ls", "ps", "cp", "rm", "help"]


def columns(header: str, names: list[str]) -> list[int]:
    return [header.index(n) for n in names]


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        canonical = {"ls": "list", "start": "serve"}.get(command, command)
        assert out.startswith(f"usage: pollama {canonical}"), out
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for command in ("serve", "create", "show", "run", "stop", "pull", "push", "list", "ps", "cp", "rm"):
        assert re.search(rf"^\s+{command}\b", top, re.M), command
    assert not re.search(r"^\s+runner\b", top, re.M)


def test_usage_mistakes_are_errors_with_exit_code_1(cli: CLI) -> None:
    result = cli.run("cp", "only-one")
    assert result.returncode == 1
    assert "Error: the following arguments are required: DESTINATION" in result.stderr


def test_version_shows_client_and_server(cli: CLI) -> None:
    result = cli.ok("-v")
    assert result.stdout == "pollama version is 0.1.0\n"
    down = cli.run("--version", OLLAMA_HOST=f"127.0.0.1:{free_port()}")
    assert down.returncode == 0
    assert down.stdout == "Warning: could not connect to a running pollama instance\nWarning: client version is 0.1.0\n"


def test_server_down_is_a_readable_error(cli: CLI) -> None:
    for args in (["list"], ["ps"], ["show", "x"], ["pull", "x"], ["run", "x", "hi"]):
        result = cli.run(*args, OLLAMA_HOST=f"127.0.0.1:{free_port()}")
        assert result.returncode == 1, args
        assert result.stderr.strip().splitlines()[-1] == (
            "Error: could not connect to pollama server — start it with `pollama serve` or the pollama app"
        )


def test_create_uploads_files_and_shows_progress(cli: CLI, tiny_model_path: Path) -> None:
    folder = cli.cwd / "create-test"
    folder.mkdir()
    (folder / "weights.gguf").write_bytes(tiny_model_path.read_bytes())
    (folder / "Modelfile").write_text(
        "# a comment\nFROM ./weights.gguf\nPARAMETER temperature 0.5\nPARAMETER stop <|x|>\n"
        'LICENSE """MIT License\n\nCopyright (c) 2026\nPermission is hereby granted"""\n'
    )
    result = cli.ok("create", "created", "-f", str(folder / "Modelfile"), "-q", "")
    lines = result.stderr.splitlines()
    assert lines[0] == "gathering model components"
    assert re.fullmatch(r"copying file sha256:[0-9a-f]{64} 100%", lines[1]), lines
    assert "parsing GGUF" in lines
    assert any(
        line.startswith("creating new layer sha256:") or line.startswith("using existing layer sha256:")
        for line in lines
    )
    assert lines[-2:] == ["writing manifest", "success"]
    assert result.stdout == ""
    show = cli.ok("show", "created", "--parameters").stdout
    assert re.search(r"^temperature\s+0\.5$", show, re.M) and re.search(r'^stop\s+"<\|x\|>"$', show, re.M)
    # The blob is already there: the second create uploads nothing new and still succeeds.
    again = cli.ok("create", "created", "-f", str(folder / "Modelfile"))
    assert again.stderr.splitlines()[-1] == "success"
    # -q quantizes the F32 weights on the server; the new model says so.
    quantized = cli.ok("create", "created-q8", "-f", str(folder / "Modelfile"), "-q", "q8_0")
    assert "quantizing F32 model to Q8_0" in quantized.stderr and quantized.stderr.splitlines()[-1] == "success"
    assert re.search(r"^\s*quantization\s+Q8_0\s*$", cli.ok("show", "created-q8").stdout, re.M)
    cli.ok("rm", "created")


def test_create_without_modelfile_uses_the_folder(cli: CLI, tiny_model_path: Path) -> None:
    folder = cli.cwd / "no-modelfile"
    folder.mkdir()
    (folder / "only.gguf").write_bytes(tiny_model_path.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "app", "create", "from-folder"],
        cwd=folder,
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "from-folder:latest" in cli.ok("list").stdout
    cli.ok("rm", "from-folder")


def test_create_errors(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "Modelfile"
    bad.write_text("FROM tiny\nPARAMETER temperature 0.5\nBOGUS x\n")
    result = cli.run("create", "broken", "-f", str(bad))
    assert (result.returncode, result.stderr) == (
        1,
        'Error: (line 3): command must be one of "from", "license", '
        '"template", "system", "adapter", "draft", "renderer", "parser", '
        '"parameter", "message", or "requires"\n',
    )
    bad.write_text("FROM tiny\n\nPARAMETER nonsense 1\n")
    result = cli.run("create", "broken", "-f", str(bad))
    assert (result.returncode, result.stderr) == (1, "Error: (line 3): unknown parameter 'nonsense'\n")
    bad.write_text('FROM tiny\nSYSTEM """never closed\n')
    assert cli.run("create", "broken", "-f", str(bad)).stderr == "Error: (line 2): unexpected EOF\n"
    result = cli.run("create", "bad name!", "-f", str(bad))
    assert (result.returncode, result.stderr) == (1, "Error: invalid model name: bad name!\n")
    result = cli.run("create", "broken", "-f", str(tmp_path / "missing"))
    assert result.returncode == 1 and result.stderr.startswith("Error: specified Modelfile wasn't found")
    bad.write_text("FROM no-such-model-anywhere.invalid/x/y\n")
    result = cli.run("create", "broken", "-f", str(bad))
    assert result.returncode == 1 and result.stderr.splitlines()[-1].startswith("Error: ")


def test_list_table_matches_api(cli: CLI, server, tiny: str, bert: str) -> None:  # type: ignore[no-untyped-def]
    tags = {m["name"]: m for m in httpx.get(server.url + "/api/tags", trust_env=False).json()["models"]}
    out = cli.ok("list").stdout
    lines = out.splitlines()
    assert re.fullmatch(r"NAME +ID +SIZE +MODIFIED +", lines[0])
    starts = columns(lines[0], ["NAME", "ID", "SIZE", "MODIFIED"])
    rows = {}
    for line in lines[1:]:
        assert line.endswith("    ")
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)], strict=True)]
        rows[cells[0]] = cells
    assert set(rows) == set(tags)
    for name, (_, ident, size, modified) in rows.items():
        assert ident == tags[name]["digest"][:12]
        assert size == human_bytes(tags[name]["size"])
        assert re.fullmatch(r"(Less than a second|\d+ seconds|1 second|About a minute|\d+ minutes) ago", modified)
    aliased = cli.ok("ls").stdout.splitlines()  # `ls` is `list` (MODIFIED may have ticked over)
    assert [line.split()[:3] for line in aliased] == [line.split()[:3] for line in lines]
    only = cli.ok("ls", "TI").stdout.splitlines()
    assert [line.split()[0] for line in only[1:]] == ["tiny:latest"]
    assert cli.ok("list", "zzz").stdout == "NAME    ID    SIZE    MODIFIED \n"


def test_show_default_view(cli: CLI, tiny: str) -> None:
    out = cli.ok("show", "tiny").stdout
    assert out.startswith(
        "  Model\n"
        "    architecture        llama    \n"
        "    parameters          205K     \n"
        "    context length      2048     \n"
        "    embedding length    64       \n"
        "    quantization        F32      \n"
        "\n"
        "  Capabilities\n"
        "    completion    \n"
        "\n"
        "  Parameters\n"
    ), out
    params = out.split("  Parameters\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert {tuple(p.split()) for p in params} >= {("num_predict", "4"), ("temperature", "0")}
    assert out.endswith("  System\n    You are a tiny test model.    \n\n")


def test_show_flags(cli: CLI, server, tiny: str) -> None:  # type: ignore[no-untyped-def]
    api = httpx.post(server.url + "/api/show", json={"model": "tiny"}, trust_env=False).json()
    assert cli.ok("show", "tiny", "--modelfile").stdout == api["modelfile"] + "\n"
    assert cli.ok("show", "tiny", "--parameters").stdout == api["parameters"] + "\n"
    assert cli.ok("show", "tiny", "--template").stdout == api["template"] + "\n"
    assert cli.ok("show", "tiny", "--system").stdout == "You are a tiny test model.\n"
    assert cli.ok("show", "tiny", "--license").stdout == "\n"
    both = cli.run("show", "tiny", "--system", "--template")
    assert (both.returncode, both.stderr) == (
        1,
        "Error: only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified\n",
    )
    verbose = cli.ok("show", "tiny", "-v").stdout
    assert "\n  Metadata\n" in verbose and "\n  Tensors\n" in verbose
    assert re.search(r"^    general\.architecture +llama +$", verbose, re.M)
    assert re.search(r"^    tokenizer\.ggml\.tokens +\[.* \.\.\.\+\d+ more\] +$", verbose, re.M)
    assert re.search(r"^    token_embd\.weight +F32 +\[64 1024\] +$", verbose, re.M)


def test_show_unknown_model(cli: CLI) -> None:
    result = cli.run("show", "nope")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "Error: model 'nope' not found\n")


def test_cp_and_rm(cli: CLI, tiny: str) -> None:
    assert cli.ok("cp", "tiny", "tiny-copy").stdout == "copied 'tiny' to 'tiny-copy'\n"
    assert "tiny-copy:latest" in cli.ok("list").stdout
    cli.ok("cp", "tiny", "tiny-copy2")
    assert cli.ok("rm", "tiny-copy", "tiny-copy2").stdout == "deleted 'tiny-copy'\ndeleted 'tiny-copy2'\n"
    assert "tiny-copy" not in cli.ok("list").stdout
    again = cli.run("rm", "tiny-copy")
    assert (again.returncode, again.stderr) == (1, "Error: model 'tiny-copy' not found\n")
    bad = cli.run("cp", "tiny", "bad name!")
    assert (bad.returncode, bad.stderr) == (1, 'Error: destination "bad name!" is invalid\n')
    missing = cli.run("cp", "nope", "other")
    assert (missing.returncode, missing.stderr) == (1, 'Error: model "nope" not found\n')


def test_ps_with_nothing_loaded(cli: CLI) -> None:
    out = cli.ok("ps").stdout
    assert out.splitlines()[0].startswith("NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL")


def test_stop_unknown_model(cli: CLI, server) -> None:  # type: ignore[no-untyped-def]
    require_endpoint(server, "/api/generate")
    result = cli.run("stop", "nope")
    assert (result.returncode, result.stderr) == (1, 'Error: couldn\'t find model "nope" to stop\n')


def test_pull_invalid_name(cli: CLI, server) -> None:  # type: ignore[no-untyped-def]
    require_endpoint(server, "/api/pull")
    result = cli.run("pull", "bad name!")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (1, "Error: invalid model name")


def test_list_does_not_import_heavy_modules(cli: CLI, tiny: str) -> None:
    code = (
        "import sys\nfrom app.cli import main\nrc = main(['list'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'PySide6', 'llama_cpp', 'quart', 'hypercorn', 'numpy'})\n"
        "print('HEAVY', heavy, rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=cli.env(), capture_output=True, text=True, timeout=60
    )
    assert "HEAVY [] 0" in result.stdout, result.stdout + result.stderr


def test_parser_keeps_serve_and_runner() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).func.__name__ == "cmd_serve"
    assert parser.parse_args(["start"]).func.__name__ == "cmd_serve"
    assert parser.parse_args(["runner"]).func.__name__ == "cmd_runner"


def test_runner_gets_its_arguments_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 0

    fake = types.ModuleType("server.runner.main")
    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "server.runner.main", fake)
    assert main(["runner", "--model", "x", "--port", "1"]) == 0
    assert seen == [["--model", "x", "--port", "1"]]


def test_create_with_a_draft_round_trips_through_show(
    cli: CLI, tiny_model_path: Path, tiny_draft_model_path: Path, tiny_other_vocab_model_path: Path
) -> None:
    """`DRAFT` uploads the draft GGUF as `draft_files`; `show --modelfile` prints it back as a
    DRAFT line that creates the same model again; a draft of another vocabulary is refused."""
    folder = cli.cwd / "draft-test"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(tiny_model_path.read_bytes())
    (folder / "draft.gguf").write_bytes(tiny_draft_model_path.read_bytes())
    (folder / "Modelfile").write_text("FROM ./model.gguf\nDRAFT ./draft.gguf\nPARAMETER draft_num_predict 3\n")
    cli.ok("create", "drafted", "-f", str(folder / "Modelfile"))
    shown = cli.ok("show", "drafted", "--modelfile").stdout
    drafts = [line for line in shown.splitlines() if line.startswith("DRAFT ")]
    assert len(drafts) == 1 and "/blobs/sha256-" in drafts[0]
    (folder / "Shown").write_text(shown)
    cli.ok("create", "drafted-again", "-f", str(folder / "Shown"))
    again = cli.ok("show", "drafted-again", "--modelfile").stdout
    assert [line for line in again.splitlines() if line.startswith("DRAFT ")] == drafts
    assert "PARAMETER draft_num_predict 3" in again
    (folder / "other.gguf").write_bytes(tiny_other_vocab_model_path.read_bytes())
    (folder / "Bad").write_text("FROM ./model.gguf\nDRAFT ./other.gguf\n")
    bad = cli.run("create", "bad-draft", "-f", str(folder / "Bad"))
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1] == (
        "Error: draft model other.gguf does not share the model's vocabulary: the draft has 1536 tokens, the model 1024"
    )
    (folder / "NoFile").write_text("FROM ./model.gguf\nDRAFT ./absent.gguf\n")
    nofile = cli.run("create", "bad-draft", "-f", str(folder / "NoFile"))
    assert (nofile.returncode, nofile.stderr.splitlines()[-1]) == (
        1,
        "Error: draft './absent.gguf' not found (DRAFT takes a local GGUF file)",
    )
    cli.ok("rm", "drafted", "drafted-again")
