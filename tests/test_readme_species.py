"""README "Your own species": every command of its code block, run verbatim on a DeepLabCut
project the test builds from the shared mouse frames (a real smoke sweep on local Ray)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.test_labels import dlc_project

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str | tuple[str, str]]:
    """The section's lines: ``posetune ...`` commands, and (file, text) for ``cat > F <<'EOF'``."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Your own species", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README section 'Your own species' has no bash block"
    steps: list[str | tuple[str, str]] = []
    lines = iter(block.group(1).splitlines())
    for line in lines:
        if heredoc := re.fullmatch(r"cat > (\S+) <<'EOF'", line):
            body = []
            for inner in lines:
                if inner == "EOF":
                    break
                body.append(inner)
            steps.append((heredoc.group(1), "\n".join(body) + "\n"))
        elif line.strip():
            steps.append(line)
    return steps


def test_readme_block_holds_only_posetune_commands_and_files() -> None:
    steps = readme_commands()
    assert all(isinstance(s, tuple) or s.startswith("posetune ") for s in steps), steps
    assert sum(isinstance(s, str) and s.startswith("posetune sweep") for s in steps) == 1


@pytest.mark.slow
@pytest.mark.ray
def test_readme_species_commands_run(shared_data: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSETUNE_DATA", str(tmp_path / "data"))
    dlc_project(shared_data, tmp_path / "openfield-Pranav-2018-10-30", frames=29)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for step in readme_commands():
            if isinstance(step, tuple):
                Path(step[0]).write_text(step[1])
                continue
            argv = shlex.split(step, comments=True)[1:]
            assert main(argv) == 0, step
    finally:
        ray.shutdown()
    assert (tmp_path / "mouse-coco" / "annotations.json").is_file()
    assert (tmp_path / "runs" / "mouse_study" / "lr.png").stat().st_size > 1000
