"""The `pollama` command: `serve` today; the full Ollama command set grows here.

This module stays import-light (no Qt, no llama.cpp) so that `pollama list`
answers instantly; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from server import __version__


def setup_logging(debug: int) -> None:
    level = logging.DEBUG if debug else logging.INFO
    logging.basicConfig(
        level=level,
        format="time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s",
        stream=sys.stderr,
    )
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
    setup_logging(config.debug)
    return run_forever(config)


def cmd_runner(args: argparse.Namespace) -> int:
    from server.runner.main import main as runner_main

    return runner_main(args.runner_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pollama", description="Large language model runner")
    parser.add_argument("-v", "--version", action="store_true", help="Show version information")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    serve = sub.add_parser("serve", aliases=["start"], help="Start pollama")
    serve.set_defaults(func=cmd_serve)
    runner = sub.add_parser("runner")  # hidden: a loaded model's process
    runner.add_argument("runner_args", nargs=argparse.REMAINDER)
    runner.set_defaults(func=cmd_runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"pollama version is {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
