"""Jobs that submit, record and cancel Slurm work."""
