"""ConfigurableResources over baton's core. Each carries baton's loaded configuration
(``settings``: the definitions built from baton.yaml and the environment hand it over; nothing
here reads it); a field set here, or in a run's config (the Launchpad), overrides it."""


from functools import cache

from dagster import ConfigurableResource, InitResourceContext, ResourceDependency
from pydantic import PrivateAttr

from baton.config import Config
from baton.layout import DriveLayout
from baton.ledger import Ledger, open_ledger
from baton.slurm.backend import SlurmBackend
from baton.slurm.budget import ProcessKind
from baton.slurm.factory import make_backend


@cache
def _ledger(url: str) -> Ledger:
    """The existing ledger (a run never creates one: ``baton db init`` does); a missing or
    unreachable one fails the run with one line naming the URL, and is tried again next
    time (a failed call is not cached)."""
    return open_ledger(url)


class SharedDriveResource(ConfigurableResource):
    """The shared drive (default: SHARED_DRIVE / baton.yaml)."""

    settings: ResourceDependency[Config]
    root: str | None = None

    def layout(self) -> DriveLayout:
        return DriveLayout(self.root) if self.root else self.settings.drive


class LedgerResource(ConfigurableResource):
    """baton's ledger (default: BATON_DATABASE_URL / a local SQLite), which must exist."""

    settings: ResourceDependency[Config]
    url: str | None = None

    def ledger(self) -> Ledger:
        return _ledger(self.url or self.settings.ledger_url)


class SlurmResource(ConfigurableResource):
    """Submits, polls and cancels through the sbatch or the local backend."""

    settings: ResourceDependency[Config]
    backend: str | None = None  # sbatch | local | auto (default: slurm.backend)
    _process: ProcessKind = PrivateAttr(default="daemon")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Who calls Slurm, for its call counts: a run's resources know their run; a
        sensor's (evaluated for the daemon) do not."""
        self._process = "run" if context.run is not None else "daemon"

    def client(self) -> SlurmBackend:
        return make_backend(self.settings, self.backend, self._process)


class MLflowResource(ConfigurableResource):
    """Links to MLflow runs (default: MLFLOW_TRACKING_URI / baton.yaml)."""

    settings: ResourceDependency[Config]
    tracking_uri: str | None = None

    def uri(self) -> str | None:
        return self.tracking_uri or self.settings.mlflow.tracking_uri

    def run_url(self, run_id: str | None) -> str | None:
        uri = self.uri()
        if not run_id or not uri or not uri.startswith("http"):
            return None
        return f"{uri.rstrip('/')}/#/runs/{run_id}"


def build_resources(config: Config) -> dict[str, ConfigurableResource]:
    """The code location's resources, each carrying ``config`` (its fields left unset)."""
    return {"slurm": SlurmResource(settings=config), "ledger": LedgerResource(settings=config),
            "drive": SharedDriveResource(settings=config),
            "mlflow": MLflowResource(settings=config)}
