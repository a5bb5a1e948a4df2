"""The core runs without Dagster: the training hook, the evaluation worker, the status
command and the exporter run on GPU servers and compute nodes and must start fast."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, pkgutil, importlib, sys
import baton
skip = {"baton.__main__"}
names = [m.name for m in pkgutil.walk_packages(baton.__path__, "baton.")
         if m.name not in skip and ".migrations." not in m.name]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names,
                  "dagster": sorted(m for m in sys.modules if m.split(".")[0] == "dagster")}))
"""


def test_no_module_of_the_core_imports_dagster() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    result = json.loads(out)
    assert {"baton.hook", "baton.jobstatus.report", "baton.evaluate.harness",
            "baton.exporter.server", "baton.cli", "baton.pipeline.scan",
            "baton.supervision.actions"} <= set(result["imported"])
    assert result["dagster"] == []
