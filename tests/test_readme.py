"""README's set-up and test commands are what users and CI run: keep them exact."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def first_code_block(section: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", body, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_is_install_then_smoke():
    assert first_code_block("Quick start") == ['pip install -e ".[dev]"', "./train.sh smoke"]


def test_ci_runs_the_readme_test_command():
    (command,) = first_code_block("Tests")
    extracted = subprocess.run(
        ["bash", "-c", "source <(sed -n '/^test_command=/p' .ci/run) && echo \"$test_command\""],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert extracted == command == "python -m pytest -q -n 2"  # two workers: CI has 2 cores
