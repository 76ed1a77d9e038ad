"""``synthface <command>``: every command takes --config FILE, --set KEY=VALUE and --dry-run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from synthface_ray import config, errors
from synthface_ray.commands import catalog

#: command name -> commands.catalog.Command (module to run it, help, examples, flag shortcuts)
COMMANDS = catalog.COMMANDS

#: errors a user can fix from the message alone: one line (errors.user_message), exit code 2
USER_ERRORS = errors.USER_ERRORS


def _module(name: str) -> ModuleType:
    """The module that runs command ``name`` (imported only now: --help never imports it)."""
    return catalog.module(name)


def build_parser() -> argparse.ArgumentParser:
    """The parser, from the catalog's strings alone (no command module, torch or Ray imported)."""
    examples = "\n".join(command.examples for command in COMMANDS.values())
    parser = argparse.ArgumentParser(
        prog="synthface",
        description="synthface-ray: synthetic face-recognition data at cluster scale.",
        epilog=f"examples:\n{examples}\n\nRun `synthface COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subs.add_parser(name, help=command.help, description=command.help,
                              epilog=f"examples:\n{command.examples}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--config", metavar="FILE", help="YAML config (see jobs/ for examples)")
        sub.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                         help="override a config key, e.g. --set output.path=s3://bucket/x (repeatable)")
        sub.add_argument("--dry-run", action="store_true", help="print the resolved config and plan; write nothing")
        for flag, key in command.shortcuts.items():
            sub.add_argument(flag, metavar="VALUE", dest=f"shortcut:{key}", help=f"same as --set {key}=VALUE")
        if command.positional:
            sub.add_argument("positional", nargs="?", metavar="PATH", help=f"same as --set {command.positional}=PATH")
    return parser


def _overrides(args: argparse.Namespace, command: catalog.Command) -> list[str]:
    out = list(args.overrides)
    for dest, value in vars(args).items():
        if dest.startswith("shortcut:") and value is not None:
            out.append(f"{dest.split(':', 1)[1]}={value}")
    if getattr(args, "positional", None):
        out.append(f"{command.positional}={args.positional}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,  # force: bound to this
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)  # call's stderr
    mod = _module(args.command)
    try:
        cfg = config.load(mod.Config, args.config, _overrides(args, COMMANDS[args.command]))
        return int(mod.run(cfg, dry_run=args.dry_run) or 0)
    except Exception as exc:
        message = errors.user_message(exc)
        if message is None or args.verbose:
            raise
        print(f"synthface {args.command}: error: {message}\n(run `synthface -v {args.command} ...` for the traceback)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"synthface {args.command}: interrupted; outputs without manifest.json are incomplete",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
