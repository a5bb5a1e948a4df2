"""ConfigurableResources over baton's core. Each reads baton's configuration (baton.yaml
plus environment) once per process; a field set here overrides it."""


from functools import cache

from dagster import ConfigurableResource

from baton.config import Config, load_config
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.slurm.backend import SlurmBackend
from baton.slurm.factory import make_backend


@cache
def baton_config() -> Config:
    return load_config()


@cache
def _ledger(url: str) -> Ledger:
    return open_ledger(url)


class SharedDriveResource(ConfigurableResource):
    """The shared drive (default: SHARED_DRIVE / baton.yaml)."""

    root: str | None = None

    def layout(self) -> DriveLayout:
        return DriveLayout(self.root) if self.root else baton_config().drive


class LedgerResource(ConfigurableResource):
    """baton's ledger (default: BATON_DATABASE_URL / a local SQLite)."""

    url: str | None = None

    def ledger(self) -> Ledger:
        return _ledger(self.url or baton_config().ledger_url)


class SlurmResource(ConfigurableResource):
    """Submits, polls and cancels through the sbatch or the local backend."""

    backend: str | None = None  # sbatch | local | auto (default: slurm.backend)

    @property
    def config(self) -> Config:
        return baton_config()

    def client(self) -> SlurmBackend:
        return make_backend(baton_config(), self.backend)


class MLflowResource(ConfigurableResource):
    """Links to MLflow runs (default: MLFLOW_TRACKING_URI / baton.yaml)."""

    tracking_uri: str | None = None

    def uri(self) -> str | None:
        return self.tracking_uri or baton_config().mlflow.tracking_uri

    def run_url(self, run_id: str | None) -> str | None:
        uri = self.uri()
        if not run_id or not uri or not uri.startswith("http"):
            return None
        return f"{uri.rstrip('/')}/#/runs/{run_id}"
