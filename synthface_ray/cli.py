"""``synthface <command>``: every command takes --config FILE, --set KEY=VALUE and --dry-run."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from synthface_ray import config, errors

#: command name -> module defining Config, run(cfg, dry_run), HELP, EXAMPLES, SHORTCUTS
COMMANDS = {
    "toyfaces": "synthface_ray.commands.toyfaces",
    "import": "synthface_ray.commands.importing",
    "export": "synthface_ray.commands.exporting",
    "inspect": "synthface_ray.commands.inspect",
    "train-generator": "synthface_ray.commands.train_generator",
    "train-fr": "synthface_ray.commands.train_fr",
    "embed": "synthface_ray.commands.embed",
    "verify": "synthface_ray.commands.verify",
    "identities": "synthface_ray.commands.identities",
    "mine": "synthface_ray.commands.mine",
    "plan": "synthface_ray.commands.plan",
    "cka": "synthface_ray.commands.cka",
    "evaluate": "synthface_ray.commands.evaluate",
    "generate": "synthface_ray.commands.generate",
    "tune": "synthface_ray.commands.tune",
    "benchmark": "synthface_ray.commands.benchmark",
    "demo": "synthface_ray.commands.demo",
    "pipeline": "synthface_ray.commands.pipeline",
    "submit": "synthface_ray.commands.submit",
}

#: errors a user can fix from the message alone: one line (errors.user_message), exit code 2
USER_ERRORS = errors.USER_ERRORS


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    examples = "\n".join(_module(name).EXAMPLES for name in COMMANDS)
    parser = argparse.ArgumentParser(
        prog="synthface",
        description="synthface-ray: synthetic face-recognition data at cluster scale.",
        epilog=f"examples:\n{examples}\n\nRun `synthface COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        mod = _module(name)
        sub = subs.add_parser(name, help=mod.HELP, description=mod.HELP,
                              epilog=f"examples:\n{mod.EXAMPLES}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--config", metavar="FILE", help="YAML config (see jobs/ for examples)")
        sub.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                         help="override a config key, e.g. --set output.path=s3://bucket/x (repeatable)")
        sub.add_argument("--dry-run", action="store_true", help="print the resolved config and plan; write nothing")
        for flag, key in getattr(mod, "SHORTCUTS", {}).items():
            sub.add_argument(flag, metavar="VALUE", dest=f"shortcut:{key}", help=f"same as --set {key}=VALUE")
        if hasattr(mod, "POSITIONAL"):
            sub.add_argument("positional", nargs="?", metavar="PATH", help=f"same as --set {mod.POSITIONAL}=PATH")
    return parser


def _overrides(args: argparse.Namespace, mod: ModuleType) -> list[str]:
    out = list(args.overrides)
    for dest, value in vars(args).items():
        if dest.startswith("shortcut:") and value is not None:
            out.append(f"{dest.split(':', 1)[1]}={value}")
    if getattr(args, "positional", None):
        out.append(f"{mod.POSITIONAL}={args.positional}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,  # force: bound to this
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)  # call's stderr
    mod = _module(args.command)
    try:
        cfg = config.load(mod.Config, args.config, _overrides(args, mod))
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
