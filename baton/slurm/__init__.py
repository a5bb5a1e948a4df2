"""Slurm: job specs, script templates, parsers and the sbatch and local backends."""
