"""A small analysis for the end-to-end tests: writes a report and its signal."""

import os
from datetime import UTC, datetime
from pathlib import Path

from baton.fsio import atomic_write
from baton.inbox import publish
from baton.layout import DriveLayout
from baton.signals import AnalysisComplete

drive = DriveLayout(Path(os.environ["SHARED_DRIVE"]))
exp = os.environ["BATON_EXPERIMENT"]
layout = drive.experiment(exp)
report = atomic_write(layout.reports_dir / "report.html",
                      f"<html><body><h1>{exp}</h1></body></html>".encode())
publish(drive, AnalysisComplete(timestamp=datetime.now(UTC), experiment=exp,
                                job_id=os.environ.get("SLURM_JOB_ID", "0"),
                                status="complete", report_path=str(report),
                                outputs=[str(report)]))
print(f"analysed {exp}")
