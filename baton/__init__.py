"""baton: training -> evaluation -> analysis on a Slurm cluster, watched.

The core package imports no ``dagster``: it runs on GPU servers and compute nodes.
"""

__version__ = "0.1.0"
