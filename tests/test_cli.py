"""The `synthface` command line, run in-process through cli.main (the installed script calls it)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing

import pytest
import yaml

from synthface_ray import cli
from synthface_ray.data import faces

SMALL = ["--set", "toyfaces.identities=3", "--set", "toyfaces.images_per_identity=4"]


def test_help_lists_every_command_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out and f"synthface {name}" in out


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_takes_config_set_and_dry_run(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    for flag in ("--config", "--set", "--dry-run", "examples:"):
        assert flag in out


HEAVY = ("torch", "ray", "pandas", "pyarrow", "diffusers", "numpy", "deepspeed", "faiss")


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["train-fr", "--help"]])
def test_help_imports_no_command_module_nor_heavy_library(argv):
    """--help answers from commands/catalog.py alone (issue 22: it took 4-14 s importing torch)."""
    probe = ("import sys\nfrom synthface_ray import cli\ntry:\n    cli.main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
             "or m.startswith('synthface_ray.commands.')))")
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['synthface_ray.commands.catalog']"


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_catalog_entry_names_a_runnable_module(command):
    mod = cli._module(command)
    assert callable(mod.run) and hasattr(mod, "Config")
    assert not hasattr(mod, "HELP"), "help lives in commands/catalog.py only"
    for key in (*cli.COMMANDS[command].shortcuts.values(), cli.COMMANDS[command].positional):
        if key:  # every shortcut names a real config key
            cls = mod.Config
            for part in key.split("."):
                assert part in {f.name for f in dataclasses.fields(cls)}, key
                cls = typing.get_type_hints(cls)[part]


def test_toyfaces_writes_dataset_grid_and_resolved_config(tmp_path, capsys):
    out = tmp_path / "tf"
    assert cli.main(["toyfaces", "--out", str(out), *SMALL]) == 0
    assert sorted(os.listdir(out)) == ["README.md", "config.yaml", "grid.png", "manifest.json", "part-00000.parquet"]
    assert faces.read_faces(str(out)).num_rows == 12
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["toyfaces"]["identities"] == 3 and resolved["output"]["path"] == str(out)
    assert "wrote 12 images" in capsys.readouterr().out
    # the resolved config re-runs the same job
    again = tmp_path / "again"
    assert cli.main(["toyfaces", "--config", str(out / "config.yaml"), "--out", str(again)]) == 0
    assert faces.read_faces(str(again)).equals(faces.read_faces(str(out)))


def test_dry_run_writes_nothing(tmp_path, capsys):
    assert cli.main(["toyfaces", "--out", str(tmp_path / "x"), "--dry-run", *SMALL]) == 0
    assert not (tmp_path / "x").exists()
    assert "nothing is written" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["toyfaces", "--set", "toyfaces.resolution=300"], "toyfaces.resolution=300 is out of range"),
        (["toyfaces", "--set", "toyfaces.colour=1"], "unknown config key(s) ['toyfaces.colour']"),
        (["import", "--format", "tiff", "--from", "x"], "input.format='tiff' is not allowed"),
        (["import", "--format", "folders"], "input.path is not set"),
        (["export", "--from", "nowhere"], "output.path is not set"),
        (["inspect", "/definitely/not/here"], "no Parquet files"),
    ],
)
def test_user_errors_exit_2_with_a_message(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = str(tmp_path / "tf")
    assert cli.main(["toyfaces", "--out", out, *SMALL]) == 0
    assert cli.main(["toyfaces", "--out", out, *SMALL]) == 2
    assert "overwrite=true" in capsys.readouterr().err
    assert cli.main(["toyfaces", "--out", out, *SMALL, "--set", "output.overwrite=true"]) == 0


def test_import_export_inspect_chain(tmp_path, capsys):
    tf, rec, back = tmp_path / "tf", tmp_path / "rec", tmp_path / "back"
    assert cli.main(["toyfaces", "--out", str(tf), *SMALL, "--set", "grid.enabled=false"]) == 0
    assert cli.main(["export", "--from", str(tf), "--format", "recordio", "--out", str(rec)]) == 0
    assert yaml.safe_load((rec / "config.yaml").read_text())["output"]["format"] == "recordio"
    assert cli.main(["import", "--format", "recordio", "--from", str(rec), "--out", str(back)]) == 0
    assert (back / "config.yaml").exists()
    capsys.readouterr()
    assert cli.main(["inspect", str(back), "--set", "input.check_images=true"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 12 and summary["identities"] == 3 and summary["complete"]
    assert "none skipped" in summary["images"]


def test_installed_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "synthface")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "toyfaces" in result.stdout


def test_command_defaults_survive_partial_overrides(capsys):
    assert cli.main(["toyfaces", "--dry-run", "--set", "output.overwrite=true"]) == 0
    assert "path: runs/toyfaces" in capsys.readouterr().out


def test_toyfaces_to_s3_with_endpoint_from_the_config(s3, capsys):
    cfg, root = s3
    argv = ["toyfaces", "--out", f"{root}/tf", *SMALL, "--set", f"storage.endpoint_url={cfg.endpoint_url}"]
    assert cli.main(argv) == 0
    assert faces.read_faces(f"{root}/tf", cfg).num_rows == 12
    capsys.readouterr()
    assert cli.main(["inspect", f"{root}/tf", "--set", f"storage.endpoint_url={cfg.endpoint_url}"]) == 0
    assert json.loads(capsys.readouterr().out)["complete"] is True


def test_dry_run_never_prints_credentials(capsys):
    argv = ["toyfaces", "--dry-run", "--set", "storage.access_key_id=AKIASECRETKEY",
            "--set", "storage.secret_access_key=hunter2hunter2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "hunter2hunter2" not in out and "AKIASECRETKEY" not in out and "<redacted>" in out


def test_every_job_yaml_loads_with_its_command():
    """jobs/*.yaml, the demo's stage configs and tuning/*.yaml name their command on line 1
    (`# synthface COMMAND --config ...`) and parse into its config type."""
    import pathlib
    import re

    from synthface_ray import config

    root = pathlib.Path(__file__).parent.parent
    jobs = (sorted((root / "jobs").glob("*.yaml")) + sorted((root / "synthface_ray" / "demo_jobs").glob("*.yaml"))
            + sorted((root / "tuning").glob("*.yaml")))
    assert len(jobs) >= 17
    for job in jobs:
        match = re.match(r"# synthface (\S+) --config", job.read_text().splitlines()[0])
        assert match and match.group(1) in cli.COMMANDS, job.name
        mod = cli._module(match.group(1))
        assert isinstance(config.load(mod.Config, str(job)), mod.Config), job.name
