"""Command line: ``python -m nbinpaint twins [DIR]`` builds the tiny twins into a hub-cache directory."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbinpaint", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    twins_parser = commands.add_parser("twins", help="build tiny random-weight twins of the guide's checkpoints")
    twins_parser.add_argument("rest", nargs=argparse.REMAINDER, help="[DIR] [--force] [--quiet]")
    args = parser.parse_args(argv)
    if args.command == "twins":
        from nbinpaint import twins

        return twins.main(args.rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
