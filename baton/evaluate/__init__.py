"""Evaluation: the worker harness that runs on compute nodes, and the metrics schema."""
