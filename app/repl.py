"""The interactive chat of `pollama run MODEL`: Ollama's REPL, command for command.

`>>> ` prompts for a message (`... ` while a `\"\"\"` block is open), slash
commands change the session, and each message goes to `/api/chat` with the
whole history. Line editing is prompt_toolkit (placeholder text, history,
bracketed paste); where it is missing or the terminal is dumb, stdlib
readline stands in. History lives in `~/.ollama/history` as plain lines, the
file Ollama uses, unless `OLLAMA_NOHISTORY` is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from app.client import APIError, Client, ClientError
from app.formatting import go_value
from app.session import RunOptions, chat, extract_images, load_model, names_a_file, parse_think
from server import atomicfile

PROMPT = ">>> "
ALT_PROMPT = "... "
PLACEHOLDER = "Send a message (/? for help)"
ALT_PLACEHOLDER = "Press Enter to send"
HISTORY_LIMIT = 100


def _err(*lines: str) -> None:
    """Help texts go to stderr, as Ollama's do."""
    for line in lines:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def usage(multimodal: bool) -> None:
    _err(
        "Available Commands:",
        "  /set            Set session variables",
        "  /show           Show model information",
        "  /load <model>   Load a session or model",
        "  /save <model>   Save your current session",
        "  /clear          Clear session context",
        "  /bye            Exit",
        "  /?, /help       Help for a command",
        "  /? shortcuts    Help for keyboard shortcuts",
        "",
        'Use """ to begin a multi-line message.',
    )
    if multimodal:
        _err("Use /path/to/file to include .jpg, .png, or .webp images.")
    _err("")


def usage_set() -> None:
    _err(
        "Available Commands:",
        "  /set parameter ...     Set a parameter",
        "  /set system <string>   Set system message",
        "  /set history           Enable history",
        "  /set nohistory         Disable history",
        "  /set wordwrap          Enable wordwrap",
        "  /set nowordwrap        Disable wordwrap",
        "  /set format json       Enable JSON mode",
        "  /set noformat          Disable formatting",
        "  /set verbose           Show LLM stats",
        "  /set quiet             Disable LLM stats",
        "  /set think             Enable thinking",
        "  /set nothink           Disable thinking",
        "",
    )


def usage_shortcuts() -> None:
    _err(
        "Available keyboard shortcuts:",
        "  Ctrl + a            Move to the beginning of the line (Home)",
        "  Ctrl + e            Move to the end of the line (End)",
        "   Alt + b            Move back (left) one word",
        "   Alt + f            Move forward (right) one word",
        "  Ctrl + k            Delete the sentence after the cursor",
        "  Ctrl + u            Delete the sentence before the cursor",
        "  Ctrl + w            Delete the word before the cursor",
        "",
        "  Ctrl + l            Clear the screen",
        "  Ctrl + c            Stop the model from responding",
        "  Ctrl + d            Exit pollama (/bye)",
        "",
    )


def usage_show() -> None:
    _err(
        "Available Commands:",
        "  /show info         Show details for this model",
        "  /show license      Show model license",
        "  /show modelfile    Show Modelfile for this model",
        "  /show parameters   Show parameters for this model",
        "  /show system       Show system message",
        "  /show template     Show prompt template",
        "",
    )


def usage_parameters() -> None:
    _err(
        "Available Parameters:",
        "  /set parameter seed <int>             Random number seed",
        "  /set parameter num_predict <int>      Max number of tokens to predict",
        "  /set parameter top_k <int>            Pick from top k num of tokens",
        "  /set parameter top_p <float>          Pick token based on sum of probabilities",
        "  /set parameter min_p <float>          Pick token based on top token probability * min_p",
        "  /set parameter num_ctx <int>          Set the context size",
        "  /set parameter temperature <float>    Set creativity level",
        "  /set parameter repeat_penalty <float> How strongly to penalize repetitions",
        "  /set parameter repeat_last_n <int>    Set how far back to look for repetitions",
        "  /set parameter num_gpu <int>          The number of layers to send to the GPU",
        "  /set parameter stop <string> <string> ...   Set the stop parameters",
        "",
    )


# -- line editing ---------------------------------------------------------------


class LineReader(Protocol):
    use_alt: bool
    history_enabled: bool

    def readline(self) -> str:
        """One line; raises EOFError on Ctrl+D and KeyboardInterrupt on Ctrl+C."""
        ...


def history_path() -> Path:
    return Path.home() / ".ollama" / "history"


def history_disabled() -> bool:
    from server.config import parse_bool

    return parse_bool(os.environ.get("OLLAMA_NOHISTORY", ""))


class PlainHistoryFile:
    """Ollama's history file: one entry per line, oldest first, the last 100 kept."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[str]:
        try:
            return [line for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines() if line]
        except OSError:
            return []

    def append(self, entry: str) -> None:
        if not entry.strip() or "\n" in entry:
            return
        entries = (self.load() + [entry])[-HISTORY_LIMIT:]
        try:
            atomicfile.write_text(self.path, "".join(e + "\n" for e in entries))
        except OSError:
            pass  # history is a convenience; never fail a chat over it


class ToolkitReader:
    """prompt_toolkit line editor with Ollama's prompts and placeholders."""

    def __init__(self, history: PlainHistoryFile, enabled: bool) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import History

        reader = self

        class _History(History):
            def load_history_strings(self) -> Iterable[str]:
                return list(reversed(history.load()))

            def store_string(self, string: str) -> None:
                if reader.history_enabled:
                    history.append(string)

        self.use_alt = False
        self.history_enabled = enabled
        self.session: Any = PromptSession(history=_History(), enable_history_search=False)

    def readline(self) -> str:
        from prompt_toolkit.formatted_text import FormattedText

        prompt, placeholder = (ALT_PROMPT, ALT_PLACEHOLDER) if self.use_alt else (PROMPT, PLACEHOLDER)
        return str(self.session.prompt(prompt, placeholder=FormattedText([("fg:ansibrightblack", placeholder)])))


class ReadlineReader:
    """stdlib readline fallback (no placeholder)."""

    def __init__(self, history: PlainHistoryFile, enabled: bool) -> None:
        import readline

        self.readline_mod = readline
        self.history = history
        self.use_alt = False
        self.history_enabled = enabled
        for entry in history.load():
            readline.add_history(entry)

    def readline(self) -> str:
        line = input(ALT_PROMPT if self.use_alt else PROMPT)
        if self.history_enabled:
            self.history.append(line)
        return line


def make_reader() -> LineReader:
    history = PlainHistoryFile(history_path())
    enabled = not history_disabled()
    if os.environ.get("TERM", "") != "dumb":
        try:
            return ToolkitReader(history, enabled)
        except Exception:  # no prompt_toolkit, or a terminal it cannot drive
            pass
    return ReadlineReader(history, enabled)


# -- the loop ---------------------------------------------------------------------


class Repl:
    """One interactive session; `run()` returns the exit code."""

    def __init__(self, client: Client, opts: RunOptions, reader: LineReader | None = None) -> None:
        self.client = client
        self.opts = opts
        self.reader = reader or make_reader()
        self.buffer = ""
        self.multiline: str | None = None  # None, "prompt" or "system"

    def run(self) -> int:
        """Read and handle lines until /bye or Ctrl+D (the line editor owns bracketed paste)."""
        while True:
            try:
                line = self.reader.readline()
            except EOFError:
                print()
                return 0
            except KeyboardInterrupt:
                print("\nUse Ctrl + d or /bye to exit.")
                self.reader.use_alt = False
                self.buffer = ""
                self.multiline = None
                continue
            if self.handle(line) == "exit":
                return 0

    def handle(self, line: str) -> str | None:
        """Process one input line; returns "exit" to end the session."""
        opts = self.opts
        if self.multiline is not None:
            ended = line.endswith('"""')
            self.buffer += line[:-3] if ended else line
            if not ended:
                self.buffer += "\n"
                self.reader.use_alt = True
                return None
            if self.multiline == "system":
                self._set_system(self.buffer)
                self.buffer = ""
            self.multiline = None
            self.reader.use_alt = False
        elif line.startswith('"""'):
            rest = line[3:]
            ended = rest.endswith('"""')
            self.buffer += rest[:-3] if ended else rest
            if not ended:
                self.buffer += "\n"
                self.multiline = "prompt"
                self.reader.use_alt = True
                return None
        elif line.startswith("/list"):
            self._list(line.split()[1:])
        elif line.startswith("/load"):
            self._load(line.split())
            return None
        elif line.startswith("/save"):
            self._save(line.split())
            return None
        elif line.startswith("/clear"):
            opts.messages = [{"role": "system", "content": opts.system}] if opts.system else []
            print("Cleared session context")
            return None
        elif line.startswith("/set"):
            self._set(line)
            return None
        elif line.startswith("/show"):
            self._show(line.split())
            return None
        elif line.startswith("/help") or line.startswith("/?"):
            args = line.split()
            if len(args) > 1:
                topic = args[1]
                if topic in ("set", "/set"):
                    usage_set()
                elif topic in ("show", "/show"):
                    usage_show()
                elif topic in ("shortcut", "shortcuts"):
                    usage_shortcuts()
            else:
                usage(opts.multimodal)
            return None
        elif line.startswith("/exit") or line.startswith("/bye"):
            return "exit"
        elif line.startswith("/"):
            first = line.split()[0]
            if not (opts.multimodal and names_a_file(line, first)):
                print(f"Unknown command '{first}'. Type /? for help")
                return None
            self.buffer += line
        else:
            self.buffer += line

        if self.buffer and self.multiline is None:
            self._send(self.buffer)
            self.buffer = ""
        return None

    # -- chat -----------------------------------------------------------------

    def _send(self, text: str) -> None:
        message: dict[str, Any] = {"role": "user", "content": text}
        if self.opts.multimodal:
            try:
                message["content"], images = extract_images(text)
            except ClientError as exc:
                print(f"error: {exc}")
                return
            if images:
                message["images"] = images
        self.opts.messages.append(message)
        try:
            reply = chat(self.client, self.opts)
        except APIError as exc:
            if "does not support thinking" in exc.message or "invalid think value" in exc.message:
                print(f"error: {exc.message}")
                return
            raise
        if reply is not None:
            self.opts.messages.append(reply)

    # -- commands -------------------------------------------------------------

    def _set_system(self, text: str) -> None:
        opts = self.opts
        opts.system = text
        message = {"role": "system", "content": text}
        if opts.messages and opts.messages[-1].get("role") == "system":
            opts.messages[-1] = message
        else:
            opts.messages.append(message)
        print("Set system message.")

    def _set(self, line: str) -> None:
        opts = self.opts
        args = line.split()
        if len(args) < 2:
            usage_set()
            return
        what = args[1]
        if what == "history":
            self.reader.history_enabled = True
        elif what == "nohistory":
            self.reader.history_enabled = False
        elif what == "wordwrap":
            opts.word_wrap = True
            print("Set 'wordwrap' mode.")
        elif what == "nowordwrap":
            opts.word_wrap = False
            print("Set 'nowordwrap' mode.")
        elif what == "verbose":
            opts.verbose = True
            print("Set 'verbose' mode.")
        elif what == "quiet":
            opts.verbose = False
            print("Set 'quiet' mode.")
        elif what == "think":
            level = args[2] if len(args) > 2 else ""
            try:
                opts.think = parse_think(level) if level else True
            except ClientError:
                opts.think = level  # the server validates levels and says why
            opts.think_explicit = True
            self._warn_if_no_thinking()
            print(f"Set 'think' mode to '{level}'." if level else "Set 'think' mode.")
        elif what == "nothink":
            opts.think = False
            opts.think_explicit = True
            self._warn_if_no_thinking()
            print("Set 'nothink' mode.")
        elif what == "format":
            if len(args) < 3 or args[2] != "json":
                print("Invalid or missing format. For 'json' mode use '/set format json'")
            else:
                opts.format = args[2]
                print(f"Set format to '{args[2]}' mode.")
        elif what == "noformat":
            opts.format = ""
            print("Disabled format.")
        elif what == "parameter":
            if len(args) < 4:
                usage_parameters()
                return
            name, values = args[2], args[3:]
            from server.errors import PollamaError
            from server.options import OPTION_TYPES, parse_option_text

            try:
                if name not in OPTION_TYPES:
                    raise PollamaError(f"unknown parameter '{name}'")
                value = parse_option_text(name, values)
            except PollamaError as exc:
                print(f'Couldn\'t set parameter: "{exc.message}"')
                return
            print(f"Set parameter '{name}' to '{', '.join(values)}'")
            opts.options[name] = value
        elif what == "system":
            if len(args) < 3:
                usage_set()
                return
            text = " ".join(args[2:])
            if text.startswith('"""'):
                text = text[3:]
                if text.endswith('"""') and len(text) >= 3:
                    text = text[:-3]
                else:
                    self.multiline = "system"
                    self.buffer = text + "\n" if text else ""
                    self.reader.use_alt = True
                    return
            self._set_system(text)
        else:
            print(f"Unknown command '/set {what}'. Type /? for help")

    def _warn_if_no_thinking(self) -> None:
        try:
            info = self.client.show(self.opts.model)
        except ClientError:
            return
        if "thinking" not in (info.get("capabilities") or []):
            print(f'warning: model "{self.opts.model}" does not support thinking output', file=sys.stderr)

    def _show(self, args: list[str]) -> None:
        opts = self.opts
        if len(args) < 2:
            usage_show()
            return
        try:
            resp = self.client.show(opts.model, system=opts.system or None, options=opts.options or None)
        except ClientError as exc:
            print("error: couldn't get model")
            print(f"error: {exc}")
            return
        what = args[1]
        if what == "info":
            from app.commands.models import render_show

            sys.stderr.write(render_show(resp, verbose=False))
        elif what == "license":
            print(resp.get("license") or "No license was specified for this model.")
        elif what == "modelfile":
            print(resp.get("modelfile") or "")
        elif what == "parameters":
            print("Model defined parameters:")
            params = str(resp.get("parameters") or "")
            if not params:
                print("  No additional parameters were specified for this model.")
            else:
                for line in params.split("\n"):
                    print(f"  {line}")
            print()
            if opts.options:
                print("User defined parameters:")
                for key, value in opts.options.items():
                    print(f"  {key:<30} {go_value(value)}")
                print()
        elif what == "system":
            if opts.system:
                print(opts.system + "\n")
            elif resp.get("system"):
                print(str(resp["system"]) + "\n")
            else:
                print("No system message was specified for this model.")
        elif what == "template":
            print(resp.get("template") or "No prompt template was specified for this model.")
        else:
            print(f"Unknown command '/show {what}'. Type /? for help")

    def _list(self, args: list[str]) -> None:
        import argparse

        from app.commands.models import cmd_list

        cmd_list(argparse.Namespace(prefix=args[0] if args else None), self.client)

    def _load(self, args: list[str]) -> None:
        opts = self.opts
        if len(args) != 2:
            print("Usage:\n  /load <modelname>")
            return
        previous = (opts.model, list(opts.messages), opts.think, opts.multimodal, opts.parent_model)
        opts.model = args[1]
        opts.messages = []
        print(f"Loading model '{opts.model}'")
        try:
            info = self.client.show(opts.model)
            caps = list(info.get("capabilities") or [])
            if not opts.think_explicit:
                opts.think = True if "thinking" in caps else None
            opts.multimodal = "vision" in caps or "audio" in caps or bool(info.get("projector_info"))
            opts.parent_model = str((info.get("details") or {}).get("parent_model") or "")
            load_model(self.client, opts)
        except APIError as exc:
            if "not found" in exc.message:
                print(f"Couldn't find model '{opts.model}'")
            else:
                print(f"error: {exc.message}")
            opts.model, opts.messages, opts.think, opts.multimodal, opts.parent_model = previous

    def _save(self, args: list[str]) -> None:
        opts = self.opts
        if len(args) != 2:
            print("Usage:\n  /save <modelname>")
            return
        from server.store.names import Name

        parent = opts.parent_model if opts.parent_model and Name.parse_lenient(opts.parent_model).is_valid else ""
        body: dict[str, Any] = {"model": args[1], "from": parent or opts.model}
        if opts.system:
            body["system"] = opts.system
        if opts.options:
            body["parameters"] = opts.options
        if opts.messages:
            body["messages"] = [{"role": m.get("role"), "content": m.get("content", "")} for m in opts.messages]
        try:
            for _ in self.client.create(body):
                pass
        except APIError as exc:
            if "invalid model name" in exc.message:
                print(f"error: The model name '{args[1]}' is invalid")
            else:
                print(f"error: {exc.message}")
            return
        print(f"Created new model '{args[1]}'")
