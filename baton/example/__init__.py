"""baton's built-in example: a toy grammar, a small NumPy language model trained on the
corpus generated from it, and an evaluator on minimal pairs and held-out text. Small
enough to train in seconds on a CPU, real enough that the demo's numbers mean something."""
