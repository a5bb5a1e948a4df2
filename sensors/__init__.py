"""Sensors: signals (training, evaluation, analysis) and the Slurm job tracker."""
