"""The pipeline's steps: taking signals in (scan), submitting a stage once (submission),
what each step submits (steps)."""
