"""`synqra` command line: serve the stack, and the stable evaluation commands.

Each sub-command lives in its own module and is imported only when used, so
`synqra route-score` does not pay for starting LiteLLM and vice versa.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> (module:function taking argv, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("proxy.supervisor:main", "start the local backends and the LiteLLM proxy"),
    "route-score": ("policies.routing.cli:route_score_main", "score JSON lines of requests with the router"),
    "route-thresholds": (
        "policies.learning.route_thresholds:route_thresholds_main",
        "thresholds that give each tier a chosen share of a sample of requests",
    ),
    "train-router": ("policies.routing.train:main", "train the router artifact from ../shared/data/routing"),
    "learn": ("policies.learning.cli:main", "adapt the router to labelled traffic (inference log or --labels FILE)"),
    "quality-score": ("policies.quality.cli:quality_score_main", "score JSON lines of answers with the validator"),
    "train-quality-scorer": ("policies.quality.train:main", "train the learned answer scorer from ../shared/data"),
    "report": ("proxy.report.cli:main", "a month's economics from the ledger: Markdown, or a self-contained HTML page"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="synqra", description="synqra-proxy: a cost-cutting LLM gateway on LiteLLM")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        print(f"synqra: unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    target, _ = COMMANDS[argv[0]]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
