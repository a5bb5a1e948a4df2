"""JobSpec validation, units, and the rendered evaluation/analysis scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from baton.config import Config
from baton.errors import InvalidName, PathEscape
from baton.slurm.render import keep_for_audit, render_job
from baton.slurm.spec import JobSpec, spec_from_script
from baton.units import format_memory, format_time, parse_memory_mb, parse_time_seconds

SCRIPT = "#!/bin/bash\ntrue\n"


@pytest.mark.parametrize(("text", "mb"), [("32G", 32768), ("4000M", 4000), ("512", 512),
                                           ("1.5G", 1536), ("2048K", 2), ("4000Mn", 4000),
                                           ("1T", 1048576)])
def test_memory(text: str, mb: float) -> None:
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize(("text", "seconds"), [("30", 1800), ("02:00:00", 7200),
                                                ("1-00:00:00", 86400), ("5:30", 330),
                                                ("1-2", 93600), ("0:0:3", 3)])
def test_time(text: str, seconds: int) -> None:
    assert parse_time_seconds(text) == seconds


def test_formatting_rounds_up() -> None:
    assert format_memory(1536.2) == "1537M" and format_memory(2048) == "2G"
    assert format_time(90061) == "1-01:01:01" and format_time(59.5) == "00:01:00"


@pytest.mark.parametrize(("field", "value"), [
    ("name", "x; rm -rf ~"), ("partition", "a b"), ("account", "$(id)"), ("qos", "q'"),
    ("gres", "gpu:1;ls"), ("array", "0-3;ls"), ("dependency", "afterok:1;ls"),
    ("output", "/tmp/a b.log"), ("error", "/tmp/$HOME"), ("output", "/tmp/%Z.log"),
    ("time", "forever"), ("mem", "lots"), ("cpus", 0),
])
def test_jobspec_rejects_unsafe_values(field: str, value: object) -> None:
    with pytest.raises(InvalidName):
        JobSpec(**{"name": "ok", "script": SCRIPT, field: value})


def test_jobspec_options_and_array() -> None:
    spec = JobSpec(name="eval_x", script=SCRIPT, time="01:00:00", mem="8G", cpus=4,
                   array="0-9%3", dependency="afterok:12:13_2", output="/d/logs/%A_%a.log")
    assert spec.array_tasks == list(range(10)) and spec.array_throttle == 3
    assert "--array=0-9%3" in spec.sbatch_options()
    assert "--dependency=afterok:12:13_2" in spec.sbatch_options()


def test_spec_from_script_reads_directives() -> None:
    text = ("#!/bin/bash\n# a comment\n#SBATCH --job-name=hello\n#SBATCH -t 00:05:00\n"
            "#SBATCH --mem=100M\n#SBATCH -c 2\n#SBATCH --array=0-3%2\necho hi\n"
            "#SBATCH --mem=999G\n")  # after the first command: ignored, as sbatch does
    spec = spec_from_script(text, mem=None, time="00:10:00")
    assert (spec.name, spec.mem, spec.cpus, spec.array) == ("hello", "100M", 2, "0-3%2")
    assert spec.time == "00:10:00"  # an override wins


def test_evaluation_script_has_spec_directives(config: Config) -> None:
    ckpt = str(config.drive.experiment("exp1").final_dir)
    job = render_job(config, "evaluation", [("exp1", ckpt)])
    s = job.script
    logs = config.drive.logs / "evaluation"
    for directive in ("#SBATCH --job-name=eval_exp1", f"#SBATCH --output={logs}/%j.log",
                      f"#SBATCH --error={logs}/%j.err", "#SBATCH --time=02:00:00",
                      "#SBATCH --mem=32G", "#SBATCH --cpus-per-task=8"):
        assert directive in s
    assert "export BATON_EXPERIMENT=exp1" in s
    assert "evaluate --experiment" in s
    assert subprocess.run(["bash", "-n"], input=s, text=True, check=False).returncode == 0


def test_analysis_script_has_spec_directives(config: Config) -> None:
    s = render_job(config, "analysis", [("exp1", "")]).script
    for directive in ("#SBATCH --job-name=analysis_exp1", "#SBATCH --time=04:00:00",
                      "#SBATCH --mem=64G", "#SBATCH --cpus-per-task=16",
                      "/logs/analysis/%j.log"):
        assert directive in s


def test_hostile_values_never_reach_a_script(config: Config) -> None:
    with pytest.raises(InvalidName, match="not allowed"):
        render_job(config, "evaluation", [("x; rm -rf ~", "/x")])
    with pytest.raises(PathEscape):
        render_job(config, "evaluation", [("exp1", "/etc/passwd")])
    # a checkpoint path with shell characters inside the drive is quoted, not run
    odd = config.drive.models / "exp1" / "it's $(touch pwned) `id`"
    s = render_job(config, "evaluation", [("exp1", str(odd))]).script
    proc = subprocess.run(["bash", "-c", s.split("export BATON_STAGE")[0] +
                           'printf %s "$BATON_CHECKPOINT"'], capture_output=True, text=True,
                          check=False, cwd=config.drive.root)
    assert proc.stdout == str(odd)
    assert not (config.drive.root / "pwned").exists()


def test_many_tasks_become_one_array(config: Config, tmp_path: Path) -> None:
    items = [(f"exp{i}", str(config.drive.experiment(f"exp{i}").final_dir)) for i in range(5)]
    job = render_job(config, "evaluation", items, array_throttle=2)
    assert job.spec.array == "0-4%2"
    assert "%A_%a.log" in job.script
    for i in (0, 4):
        proc = subprocess.run(
            ["bash", "-c", job.script.split("export BATON_STAGE")[0] +
             'echo "$BATON_EXPERIMENT $BATON_CHECKPOINT"'],
            env={"SLURM_ARRAY_TASK_ID": str(i), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=False)
        assert proc.stdout.split() == [f"exp{i}", items[i][1]]
    path = keep_for_audit(config.drive, job)
    assert path.read_text() == job.script and path.is_relative_to(config.drive.logs / "scripts")


def test_an_admin_template_edited_between_renders_is_read_again(config: Config,
                                                                tmp_path: Path) -> None:
    """The template environment is kept per process (a burst renders a thousand scripts):
    an admin's template changed on disk is still what the next script is made from."""
    import os

    template = tmp_path / "site" / "job.sh.j2"
    template.parent.mkdir()
    template.write_text("#!/bin/bash\n# first {{ stage }}\n{{ command }}\n")
    stage = config.stage("evaluation").model_copy(update={"template": template})
    site = config.model_copy(update={"stages": {**config.stages, "evaluation": stage}})
    items = [("exp1", str(config.drive.experiment("exp1").final_dir))]
    assert "# first evaluation" in render_job(site, "evaluation", items).script
    template.write_text("#!/bin/bash\n# second {{ stage }}\n{{ command }}\n")
    later = template.stat().st_mtime + 10
    os.utime(template, (later, later))
    script = render_job(site, "evaluation", items).script
    assert "# second evaluation" in script and "# first" not in script
