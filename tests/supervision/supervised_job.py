"""A stage job for the supervision tests, whose behaviour its experiment's name picks:
``hog-*`` holds 150 MB (over a 100M request, within 200M): under 150M of request until
Slurm kills it (no race between its length and Slurm's once-a-second memory sampling),
else for a few seconds; ``fail-*`` exits 3, ``slow-*`` sleeps two minutes; anything else
succeeds at once."""

import os
import time

exp = os.environ["BATON_EXPERIMENT"]
if exp.startswith("hog-"):
    block = bytearray(150 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not reserved
    over = int(os.environ.get("SLURM_MEM_PER_NODE", "0")) < 150
    time.sleep(600 if over else 4)
elif exp.startswith("fail-"):
    raise SystemExit(3)
elif exp.startswith("slow-"):
    time.sleep(120)
print(f"{exp}: done")
