"""The command line answers --help and argument errors without importing torch (which costs seconds).

The commands import their implementation inside their bodies; these tests fail when a module that
:mod:`hudd.cli` imports at the top level (or code run while parsing the arguments) imports torch.
"""

import subprocess
import sys
from pathlib import Path

from hudd.cli import cli

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("simulate", "train", "test", "heatmaps", "cluster", "assign", "retrain", "analyze", "evaluate", "report", "doctor",
            "export", "describe", "config", "demo")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_importing_the_cli_does_not_import_torch():
    run = python("import hudd.cli, sys; sys.exit('torch' in sys.modules)")
    assert run.returncode == 0, "importing hudd.cli imported torch: keep heavy imports inside the command bodies\n" + run.stderr


def test_help_and_argument_errors_do_not_import_torch():
    code = """
import sys
from hudd.cli import cli
for args in (["--help"], ["retrain", "--help"], ["cluster", "--help"], ["analyze"], ["retrain", "x", "--runs", "abc"]):
    try:
        cli.main(args, prog_name="hudd")
    except SystemExit as exc:
        print(args, exc.code, file=sys.stderr)
sys.exit(7 if "torch" in sys.modules else 0)
"""
    run = python(code)
    assert run.returncode == 0, "hudd --help or an argument error imported torch\n" + run.stderr
    assert run.stderr.count(" 0\n") == 3 and run.stderr.count(" 2\n") == 2, run.stderr  # help exits 0, a bad argument 2


def test_help_lists_every_command():
    run = subprocess.run([sys.executable, "-m", "hudd.cli", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    listed = {line.split()[0] for line in run.stdout.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert set(COMMANDS) <= set(cli.commands), "a command went missing from hudd.cli"
    assert listed == set(cli.commands), run.stdout
