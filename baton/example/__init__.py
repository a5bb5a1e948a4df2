"""baton's built-in example: a toy grammar, a small NumPy language model trained on the
corpus generated from it, and an evaluator on minimal pairs and held-out text. Small
enough to train in seconds on a CPU, real enough that the demo's numbers mean something.

Its matrices are small: BLAS threads only cost here (one per core, in every process that
trains or evaluates at the same time; measured ~20x slower on 2 busy cores), so unless
the user chose otherwise they are limited to one before NumPy is first imported."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    if not os.environ.get(_var):
        os.environ[_var] = "1"
