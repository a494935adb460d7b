"""`python -m reeflab.checks <module folder | installed module id> --report r.json [--html r.html]`."""

import argparse
import sys

from .runner import add_arguments, command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reeflab.checks", description="Check a DEEPaaS module")
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
