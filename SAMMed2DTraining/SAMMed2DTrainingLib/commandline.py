"""Headless entry point: ``Slicer --no-main-window --python-script SAMMed2DTraining.py -- COMMAND ...``.

``train`` and ``benchmark`` take exactly the options of ``sammed2d train`` / ``sammed2d benchmark``
and run them through the engine's command line inside Slicer's Python, so both front ends stay
one tool. The engine is imported only when a command runs, never when Slicer loads the module.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import List, Sequence

ENGINE_COMMANDS = {
    "train": "fine-tune on volumes with label maps or a SAM-Med2D JSON set (options of `sammed2d train`)",
    "benchmark": "Dice, IoU, HD95 and speed of models per prompting mode (options of `sammed2d benchmark`)",
}


def scriptArguments(argv: Sequence[str]) -> List[str]:
    """Arguments meant for this script: those after the first "--".

    Slicer passes the arguments that follow the script path on to sys.argv; the "--" keeps
    ours apart from Slicer's own options. Without "--", everything after the script path is used.
    """
    argv = list(argv)
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return argv[1:]


def buildArgumentParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="Slicer --no-main-window --python-script SAMMed2DTraining.py --",
        description="SAM-Med2D adapter fine-tuning and Dice benchmarking, run headless inside Slicer.",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subcommands.required = True
    subcommands.add_parser("version", help="print the version of the SAM-Med2D engine and exit")
    for name, help in ENGINE_COMMANDS.items():
        subcommands.add_parser(name, help=help)  # listed here; their options are parsed by the engine
    return parser


def runCommandLine(args: Sequence[str]) -> int:
    """Run one command; return the process exit status (0 success, 1 failure). Never raises."""
    args = list(args)
    parser = buildArgumentParser()
    try:
        # engine commands go to the engine's parser whole (argparse cannot forward a leading --help itself)
        command = args[0] if args and args[0] in ENGINE_COMMANDS else parser.parse_args(args).command
    except SystemExit as stop:  # argparse exits on --help (status 0) and on bad arguments (status 2).
        return _status(stop.code)
    try:
        if command == "version":
            return _printVersion()
        if command in ENGINE_COMMANDS:
            from sammed2d.cli import main

            try:
                return _status(main(args))
            except SystemExit as stop:  # the engine's parser: --help, or bad options (already explained)
                return _status(stop.code)
        print(f"error: unknown command {command!r}", file=sys.stderr)
        return 1
    except Exception:  # A failed run must still end with a status, not leave Slicer running.
        traceback.print_exc()
        return 1


def _status(code) -> int:
    return 0 if code in (0, None) else 1


def _printVersion() -> int:
    from SAMMed2DLib.engine import ENGINE_PACKAGE, engineStatus

    status = engineStatus()
    if status.version is None:
        print(f"error: cannot import '{ENGINE_PACKAGE}': {status.error}", file=sys.stderr)
        return 1
    print(f"{ENGINE_PACKAGE} {status.version}")
    return 0
