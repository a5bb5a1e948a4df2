"""``baton plan PATH...``: what the daemon would do with these signal files (or a whole
drive), shown without doing it. Read-only: it creates no ledger, folder or script."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from baton.pipeline.plan import Plan, PlannedSubmission


def cmd_plan(args: argparse.Namespace) -> int:
    from baton.cli.common import read_only_ledger
    from baton.config import load_config
    from baton.pipeline.plan import make_plan

    # no setup_logging: a configured log file would be a file written
    config = load_config(getattr(args, "config", None))
    ledger, note = read_only_ledger(config)
    try:
        plan = make_plan(config, [Path(p) for p in args.paths], ledger)
    finally:
        if ledger is not None:
            ledger.close()
    print(render_plan(plan, note, scripts=args.scripts))
    return 0 if plan.ok else 1


def render_plan(plan: Plan, ledger_note: str, *, scripts: bool = False) -> str:
    """The plan in words: each file's verdict, then each submission with its resources and
    its script's #SBATCH lines (``scripts``: the whole script)."""
    from baton.textsafe import printable

    lines = []
    for v in plan.verdicts:
        if v.signal is not None:
            lines.append(f"accepted     {printable(v.path)}  "
                         f"({v.signal.kind} of {v.signal.signal.experiment})")
        else:
            lines.append(f"quarantined  {printable(v.path)}: {printable(v.reason)}")
    if not plan.verdicts:
        lines.append("no signal files found")
    lines.append(ledger_note)
    lines += plan.notes
    for sub in plan.submissions:
        lines += ["", *_submission(sub, scripts)]
    if not plan.submissions:
        lines.append("nothing would be submitted")
    return "\n".join(lines)


def _submission(sub: PlannedSubmission, scripts: bool) -> list[str]:
    from baton.textsafe import printable

    lines = []
    for t in sub.tasks:
        if t.job_id is not None:
            lines.append(f"already submitted: {sub.stage} of {t.experiment}"
                         + (f" {t.checkpoint}" if t.checkpoint else "") + f" as job {t.job_id}")
    new = sub.new_tasks
    if not new:
        return lines
    if sub.problem or sub.rendered is None:
        names = ", ".join(sorted({t.experiment for t in new}))
        return [*lines, f"would fail to submit {sub.stage} of {names}: "
                        f"{printable(sub.problem)}"]
    spec = sub.rendered.spec
    shape = f"a job array of {len(new)} tasks (--array={spec.array})" if spec.array \
        else "one job"
    lines.append(f"would submit {sub.stage}: {shape}")
    lines.append(f"  resources: {spec.cpus} cpus, mem {spec.mem}, time {spec.time}"
                 + "".join(f", {k} {v}" for k, v in (("partition", spec.partition),
                                                    ("account", spec.account),
                                                    ("qos", spec.qos), ("gres", spec.gres))
                           if v))
    for i, t in enumerate(new):
        lines.append(f"  task {i}: {t.experiment}" + (f" {t.checkpoint}" if t.checkpoint else ""))
    if scripts:
        lines += ["  script:"] + [f"    {line}" for line in spec.script.splitlines()]
    else:
        lines += [f"  {line}" for line in spec.script.splitlines() if line.startswith("#SBATCH")]
        lines.append("  (--scripts prints the whole script)")
    return lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="what the daemon would do with signal files (writes nothing)",
        description="For each signal file (or every signal under a folder, e.g. the whole "
        "drive): accepted or quarantined and why; then each submission the daemon would "
        "make: the array shape, the resources and the rendered Slurm script. Writes "
        "nothing; an existing ledger is read to show what is already submitted. Exit 0 "
        "when every file would be accepted and every submission would go through, 1 "
        "otherwise.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a signal file, or a folder to search for signal files")
    p.add_argument("--scripts", action="store_true",
                   help="print each rendered script in full (default: its #SBATCH lines)")
    p.set_defaults(func=cmd_plan)
