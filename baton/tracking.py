"""MLflow, never in the way: every call is guarded, short timeouts, no retries storm, and
no call at all after one failed. A training script must not fail (or hang) because the
tracking server is down."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# Without these the client retries for minutes before it gives up.
QUIET = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class Tracker:
    """One MLflow run; every method returns quietly when MLflow is absent or down."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.uri = tracking_uri
        self.client: Any = None
        self.run_id: str | None = None
        if not tracking_uri:
            return
        for key, value in QUIET.items():
            os.environ.setdefault(key, value)
        try:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri)
        except Exception as exc:
            log.warning("MLflow unavailable (%s): not tracking", exc)

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call MLflow once; after the first failure of any call, never again: a server
        that accepts connections but does not answer costs one timeout, not one per
        metric."""
        if self.client is None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            log.warning("MLflow %s failed (%s); carrying on without MLflow", what, exc)
            self.client = None
            return None

    def start(self, experiment: str, run_name: str, *, parent_run_id: str | None = None,
              tags: Mapping[str, str] | None = None) -> str | None:
        def go() -> str:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(
                experiment, tags={"mlflow.experimentKind": "custom_model_development"})
            all_tags = {"mlflow.runName": run_name, **(tags or {})}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            return self.client.create_run(exp_id, tags=all_tags).info.run_id

        self.run_id = self._guard("start", go)
        return self.run_id

    def params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self._guard("log_param", lambda k=key, v=value: self.client.log_param(
                self.run_id, k, str(v)[:500]))

    def metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self._guard("log_metric", lambda k=key, v=value: self.client.log_metric(
                self.run_id, k.replace("/", "."), float(v), step=step or 0))

    def artifact(self, path: Path, folder: str | None = None) -> None:
        self._guard("log_artifact", lambda: self.client.log_artifact(self.run_id, str(path),
                                                                     folder))

    def end(self, ok: bool = True) -> None:
        if self.run_id:
            self._guard("end", lambda: self.client.set_terminated(
                self.run_id, "FINISHED" if ok else "FAILED"))

    def __bool__(self) -> bool:
        return self.client is not None and self.run_id is not None
