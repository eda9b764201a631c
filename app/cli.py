"""The `pollama` command: Ollama's command set, flags and output, as an HTTP client of the API.

This module only parses arguments and dispatches. It stays import-light (no
Qt, no llama.cpp, no Quart) so that `pollama list` answers instantly: each
command module is imported when its command runs, and only `serve` and the
hidden `runner` and `quantize` import the server side.

Every failure a person should act on is printed as `Error: <message>` on
stderr with exit code 1; Ctrl+C ends a command quietly with 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from server import __version__


def setup_logging(debug: int, log_format: str = "text") -> None:
    """stderr, as Ollama logs; `POLLAMA_LOG_FORMAT=json` makes each line a JSON object (server/logs.py)."""
    from server.logs import formatter

    level = logging.DEBUG if debug else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    if not debug:
        logging.getLogger("hypercorn.error").setLevel(logging.WARNING)


def cmd_serve(_: argparse.Namespace) -> int:
    from server.app import run_forever
    from server.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    setup_logging(config.debug, config.log_format)
    return run_forever(config)


def cmd_app(args: argparse.Namespace) -> int:
    from app.desktop import main as desktop_main

    return desktop_main(list(args.app_args))


def cmd_runner(args: argparse.Namespace) -> int:
    from server.runner.main import main as runner_main

    return runner_main(args.runner_args)


class Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes like every other error: `Error: ...`, exit 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"Error: {message}\n")


def _bool_flag(value: str) -> bool:
    from server.config import parse_bool

    return parse_bool(value)


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: expected 1-65535")
    return int(value)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a positive integer")
    return int(value)


def _client_command(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    """A command that talks to the server: import its module lazily, give it a Client."""

    def run(args: argparse.Namespace) -> int:
        from app.client import Client

        handler = getattr(importlib.import_module(f"app.commands.{module}"), func)
        with Client() as client:
            return int(handler(args, client) or 0)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pollama", description="Large language model runner")
    parser.add_argument("-v", "--version", action="store_true", help="Show version information")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=Parser)

    serve = sub.add_parser(
        "serve",
        aliases=["start"],
        help="Start pollama",
        description="Start pollama (environment: OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_KEEP_ALIVE, ...)",
    )
    serve.set_defaults(func=cmd_serve)

    create = sub.add_parser("create", help="Create a model", description="Create a model from a Modelfile")
    create.add_argument("model", metavar="MODEL")
    create.add_argument("-f", "--file", help='Name of the Modelfile (default "Modelfile")')
    create.add_argument("-q", "--quantize", help="Quantize model to this level (e.g. q4_K_M)")
    create.set_defaults(func=_client_command("create", "cmd_create"))

    show = sub.add_parser("show", help="Show information for a model", description="Show information for a model")
    show.add_argument("model", metavar="MODEL")
    show.add_argument("--license", action="store_true", help="Show license of a model")
    show.add_argument("--modelfile", action="store_true", help="Show Modelfile of a model")
    show.add_argument("--parameters", action="store_true", help="Show parameters of a model")
    show.add_argument("--template", action="store_true", help="Show template of a model")
    show.add_argument("--system", action="store_true", help="Show system message of a model")
    show.add_argument("-v", "--verbose", action="store_true", help="Show detailed model information")
    show.set_defaults(func=_client_command("models", "cmd_show"))

    run = sub.add_parser(
        "run", help="Run a model", description="Run a model (environment: OLLAMA_HOST, OLLAMA_NOHISTORY)"
    )
    run.add_argument("model", metavar="MODEL")
    run.add_argument("prompt", metavar="PROMPT", nargs="*")
    run.add_argument("--keepalive", help="Duration to keep a model loaded (e.g. 5m)")
    run.add_argument("--verbose", action="store_true", help="Show timings for response")
    run.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    run.add_argument("--nowordwrap", action="store_true", help="Don't wrap words to the next line automatically")
    run.add_argument("--format", help="Response format (e.g. json)")
    run.add_argument(
        "--think",
        metavar="[=true|false|high|medium|low]",
        help="Enable thinking mode: true/false or high/medium/low for supported models",
    )
    run.add_argument("--hidethinking", action="store_true", help="Hide thinking output (if provided)")
    run.add_argument(
        "--truncate",
        type=_bool_flag,
        metavar="[=true|false]",
        help="For embedding models: truncate inputs exceeding context length (default: true)",
    )
    run.add_argument(
        "--dimensions",
        type=int,
        default=0,
        help="Truncate output embeddings to specified dimension (embedding models only)",
    )
    run.set_defaults(func=_client_command("run", "cmd_run"))

    stop = sub.add_parser("stop", help="Stop a running model", description="Stop a running model")
    stop.add_argument("model", metavar="MODEL")
    stop.set_defaults(func=_client_command("models", "cmd_stop"))

    pull = sub.add_parser("pull", help="Pull a model from a registry", description="Pull a model from a registry")
    pull.add_argument("model", metavar="MODEL")
    pull.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    pull.set_defaults(func=_client_command("transfer", "cmd_pull"))

    push = sub.add_parser("push", help="Push a model to a registry", description="Push a model to a registry")
    push.add_argument("model", metavar="MODEL")
    push.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    push.set_defaults(func=_client_command("transfer", "cmd_push"))

    ls = sub.add_parser(
        "list",
        aliases=["ls"],
        help="List models",
        description="List models (optionally those whose name starts with PREFIX)",
    )
    ls.add_argument("prefix", metavar="PREFIX", nargs="?")
    ls.set_defaults(func=_client_command("models", "cmd_list"))

    ps = sub.add_parser("ps", help="List running models", description="List running models")
    ps.add_argument("prefix", metavar="PREFIX", nargs="?", help=argparse.SUPPRESS)
    ps.set_defaults(func=_client_command("models", "cmd_ps"))

    cp = sub.add_parser("cp", help="Copy a model", description="Copy a model")
    cp.add_argument("source", metavar="SOURCE")
    cp.add_argument("destination", metavar="DESTINATION")
    cp.set_defaults(func=_client_command("models", "cmd_cp"))

    rm = sub.add_parser("rm", help="Remove a model", description="Remove one or more models")
    rm.add_argument("models", metavar="MODEL", nargs="+")
    rm.set_defaults(func=_client_command("models", "cmd_rm"))

    helper = sub.add_parser("help", help="Help about any command")
    helper.add_argument("topic", metavar="COMMAND", nargs="?")
    helper.set_defaults(func=lambda a: _help(parser, sub, a.topic))

    desktop = sub.add_parser(
        "app",
        help="Start the pollama tray application",
        description="Start the tray application (and the server, unless one already runs on OLLAMA_HOST)",
    )
    desktop.add_argument(
        "app_args", nargs=argparse.REMAINDER, help="--hidden: start in the tray only; --show PAGE: open a page"
    )
    desktop.set_defaults(func=cmd_app)

    worker = sub.add_parser(
        "worker",
        help="Lend this machine's devices to a pollama server (llama.cpp RPC)",
        description="Serve this machine's GPUs (or its CPU) to a pollama server that lists it in "
        "POLLAMA_RPC_WORKERS, over llama.cpp's RPC protocol. The protocol has no authentication: "
        "keep the default 127.0.0.1, or bind wider only on a network you trust.",
    )
    worker.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    worker.add_argument("--port", type=_port, default=50052, help="port to listen on (default 50052)")
    worker.add_argument("--threads", type=_positive, default=0, help="CPU threads (default: physical cores)")
    worker.add_argument("--device", default="", help="comma-separated devices to serve (default: GPUs, else CPU)")
    worker.add_argument("--cache", action="store_true", help="cache received tensors on disk (faster reloads)")
    worker.set_defaults(func=lambda a: importlib.import_module("app.commands.worker").cmd_worker(a))

    runner = sub.add_parser("runner")  # hidden: a loaded model's process
    runner.add_argument("runner_args", nargs=argparse.REMAINDER)
    runner.set_defaults(func=cmd_runner)
    # Keep the internal command out of `pollama --help`.
    sub._choices_actions = [a for a in sub._choices_actions if a.dest != "runner"]  # noqa: SLF001
    return parser


def _help(parser: argparse.ArgumentParser, sub: Any, topic: str | None) -> int:
    if topic and topic in sub.choices:
        sub.choices[topic].print_help()
    else:
        parser.print_help()
    return 0


RUN_VALUE_FLAGS = ("--keepalive", "--format", "--dimensions")


def _normalize(argv: list[str]) -> list[str]:
    """Make `run` parse like cobra does.

    Flags may come after the prompt (`run m "hi" --verbose`), which argparse's
    `nargs="*"` cannot take, so flags move to the front and the words after
    them become positionals behind `--`. `--think` and `--truncate` take an
    optional `=value` (cobra's NoOptDefVal) and never swallow the next word.
    """
    if argv[:1] != ["run"]:
        return argv
    flags: list[str] = []
    words: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            words.extend(argv[i + 1 :])
            break
        if arg in ("--think", "--truncate"):
            flags.append(f"{arg}=true")
        elif arg in RUN_VALUE_FLAGS:
            flags.extend(argv[i : i + 2])
            i += 1
        elif arg.startswith("-") and len(arg) > 1:
            flags.append(arg)
        else:
            words.append(arg)
        i += 1
    return ["run", *flags, "--", *words] if words else ["run", *flags]


def version() -> int:
    """Client and server versions, as `ollama -v` prints them."""
    from app.client import Client, ClientError

    server_version = ""
    try:
        with Client() as client:
            server_version = client.version()
    except ClientError:
        print("Warning: could not connect to a running pollama instance")
    if server_version:
        print(f"pollama version is {server_version}")
    if server_version != __version__:
        print(f"Warning: client version is {__version__}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["runner"]:
        # The runner's own flags (`--model ...`) are not ours to parse.
        return cmd_runner(argparse.Namespace(runner_args=list(argv[1:])))
    if argv[:1] == ["app"]:
        return cmd_app(argparse.Namespace(app_args=list(argv[1:])))
    if argv[:1] == ["quantize"]:
        # Hidden, like `runner`: the child `/api/create` quantizes in (frozen builds have no `-m`).
        from server.store.quantize import main as quantize_main

        return quantize_main(list(argv[1:]))
    if not argv and getattr(sys, "frozen", False):
        # The bundled app, double-clicked: the tray, not a usage message.
        return cmd_app(argparse.Namespace(app_args=[]))
    parser = build_parser()
    args = parser.parse_args(_normalize(list(argv)))
    if args.version:
        return version()
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.command in ("serve", "start", "runner", "app"):
        return int(args.func(args) or 0)
    from app.client import ClientError

    try:
        return int(args.func(args) or 0)
    except ClientError as exc:
        sys.stdout.flush()
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.stdout.flush()
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
