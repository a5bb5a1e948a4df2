"""The submission keys of the pipeline's steps. A key derives from the signal that asked
for the work, so asking twice submits once; ``baton plan`` and the dry run derive the same
keys to say what is already submitted."""

from __future__ import annotations

import hashlib


def short(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def evaluation_key(experiment: str, signal_key: str, checkpoint: str) -> str:
    """The key of one evaluation task: the training signal and checkpoint it answers."""
    return f"evaluation:{experiment}:{short(signal_key)}:{short(checkpoint)}"


def analysis_key(experiment: str, trigger_key: str) -> str:
    """The key of an analysis: the evaluation (its training signal) it answers."""
    return f"analysis:{experiment}:{short(trigger_key)}"


def evaluation_items(experiment: str, signal_key: str, checkpoints: list[str]
                     ) -> list[tuple[tuple[str, str], str]]:
    """Each checkpoint of a training signal once, in order, with its task's key."""
    return [((experiment, c), evaluation_key(experiment, signal_key, c))
            for c in dict.fromkeys(checkpoints)]


# a fact written before a request's evaluations are claimed (by the training sensor's tick
# or its batch run), answered by ``run:{request}`` once Dagster holds its event: what a
# submitter that died leaves for the next tick to finish (sensors/tick_submission.py)
UNDER_WAY = "submission_under_way"


def under_way(request_key: str) -> str:
    return f"under_way:{request_key}"
