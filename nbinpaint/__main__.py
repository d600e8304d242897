"""Command line: ``nbinpaint twins [DIR]`` builds the tiny twins; ``nbinpaint serve`` starts a workshop server;
``nbinpaint app`` opens the studio as a Voilà web app connected to one. ``nbinpaint COMMAND --help`` for more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _twins(rest: list[str]) -> int:
    from nbinpaint import twins

    return twins.main(rest)


def _serve(rest: list[str]) -> int:
    from nbinpaint.serve import cli

    return cli.main(rest)


def _app(rest: list[str]) -> int:
    from nbinpaint import app

    return app.main(rest)


# Each command parses its own arguments (its --help included), so only the first word is read here.
COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "twins": (_twins, "build tiny random-weight twins of the guide's checkpoints: twins [DIR] [--force] [--quiet]"),
    "serve": (_serve, "serve the pipeline manager to many notebook kernels (workshop mode, on Ray Serve)"),
    "app": (_app, "the studio as a Voilà web app, connected to a workshop server"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]][0](argv[1:])
    parser = argparse.ArgumentParser(prog="nbinpaint", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary)
    parser.parse_args(argv)  # prints the usage, or the error for an unknown command
    return 2


if __name__ == "__main__":
    sys.exit(main())
