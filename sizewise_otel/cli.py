"""The ``sizewise-otel`` command: demo, render, validate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from sizewise_otel.settings import SettingsError


def _project_root() -> Path:
    """The checkout holding README.md and the generated artifacts (the current directory)."""
    return Path.cwd()


def cmd_demo(args: argparse.Namespace) -> int:
    from sizewise_otel.demo.runner import serve
    from sizewise_otel.settings import get_settings

    get_settings()  # fail fast, with one line, on a bad variable
    asyncio.run(serve(args.host, args.port, args.load, args.load_rate, args.load_duration))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from sizewise_otel.render.artifacts import render

    root = Path(args.root) if args.root else _project_root()
    differing = render(root, check=args.check)
    if args.check:
        if differing:
            print("out of date (run `sizewise-otel render`): " + ", ".join(differing), file=sys.stderr)
            return 1
        print("all generated files are up to date")
    else:
        print(f"wrote {len(differing)} file(s)" + (": " + ", ".join(differing) if differing else ""))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sizewise_otel.validate import main as validate_main

    return validate_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sizewise-otel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the instrumented HVAC demo service on embedded defaults")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--load", action="store_true", help="drive realistic traffic, errors included")
    demo.add_argument("--load-rate", type=float, default=20.0, help="requests per second (default 20)")
    demo.add_argument("--load-duration", type=float, default=None,
                      help="stop the demo after this many seconds of load (default: run until Ctrl-C)")
    demo.set_defaults(func=cmd_demo)

    render = sub.add_parser("render", help="regenerate dashboards, rules and the metrics reference")
    render.add_argument("--check", action="store_true", help="fail if a checked-in file differs")
    render.add_argument("--root", default=None, help="project checkout (default: current directory)")
    render.set_defaults(func=cmd_render)

    validate = sub.add_parser("validate", help="check a running deployment and print a score")
    validate.add_argument("--url", default="http://127.0.0.1:8000")
    validate.add_argument("--prometheus", default=None)
    validate.add_argument("--alertmanager", default=None)
    validate.add_argument("--api-key", default=None)
    validate.add_argument("--json", action="store_true")
    validate.add_argument("--min-score", type=float, default=90.0)
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"sizewise-otel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
