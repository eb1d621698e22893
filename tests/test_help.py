"""Help that helps: every subcommand, option and argument of ``posetune`` has a description,
and the top-level help says what posetune is and which commands to try first."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from orchestrator.cli import build_parser


def walk(parser: argparse.ArgumentParser, path: str = "posetune"
         ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, f"{path} {name}")


def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest for choice in action._choices_actions if choice.help}
            missing += [f"{path} {name}" for name in action.choices if name not in described]
        elif not action.help or not action.help.strip():
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_subcommand_option_and_argument_has_help() -> None:
    missing = [m for path, parser in walk(build_parser()) for m in undocumented(parser, path)]
    assert not missing, f"add help= to: {', '.join(missing)}"


def test_the_walk_sees_nested_commands_and_catches_a_missing_help() -> None:
    parser = build_parser()
    paths = [path for path, _ in walk(parser)]
    assert "posetune data synth" in paths and "posetune sweep" in paths
    child = dict(walk(parser))["posetune data convert"]
    child.add_argument("--undocumented")
    assert undocumented(child, "x") == ["x --undocumented"]
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands.add_parser("bare")
    assert undocumented(parser, "posetune") == ["posetune bare"]


def test_top_level_help_explains_and_lists_first_commands(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "ablation study of 2D animal pose estimation" in out
    assert "Arguments become typed config" not in out  # not the module's internal docstring
    first = out.split("first commands to try:")[1].splitlines()[1:4]
    assert [line.split()[:2] for line in first] == [
        ["posetune", "demo"], ["posetune", "list"], ["posetune", "sweep"]]


def test_subcommand_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["plot", "--help"])
    out = capsys.readouterr().out
    assert "draw a figure from results" in out and "PNG file to write" in out
    assert "examples:\n  posetune plot synthetic_amount" in out
