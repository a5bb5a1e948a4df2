"""Sensors: signals (training, evaluation, analysis), the Slurm job tracker and the
supervisor."""
