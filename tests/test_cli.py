import subprocess
import sys

from flowcore import __version__
from flowcore.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert __version__ in capsys.readouterr().out


def test_plugins_table_lists_builtins(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "builtins" in out and "toy2d" in out and "label" in out and "ok" in out


def test_plugins_show(capsys):
    assert main(["plugins", "show", "toy2d"]) == 0
    assert "dataset   moons" in capsys.readouterr().out
    assert main(["plugins", "show", "nothing_here"]) == 2


def test_help_does_not_import_torch():
    code = "import sys; from flowcore.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
