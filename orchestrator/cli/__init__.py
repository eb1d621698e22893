"""The ``posetune`` command: the parser and ``main`` (:mod:`.parser`), the handlers
(:mod:`.commands`)."""

from orchestrator.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
