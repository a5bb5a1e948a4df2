"""The one Dagster code location of baton: assets, checks, sensors, schedules, jobs and
resources.

Importing this module reads nothing: Dagster calls ``defs`` when it loads the code location
(the webserver's and the daemon's code servers, and every run's process), and that reads
baton.yaml and the environment once, into the resources and the sensors built here.

Every run is short (it submits, records or checks, then returns), so its steps run in the
run's own process: no step worker process to start per step, which on a loaded head node
is most of a run's cost."""

import logging

from dagster import Definitions, definitions, in_process_executor

from assets.batches import BATCH_JOBS
from assets.campaign import campaign_report
from assets.checks import checkpoint_complete
from assets.experiment import (
    analysis_job,
    analysis_report,
    evaluation_job,
    evaluation_metrics,
    model,
)
from baton.config import Config, load_config
from baton.errors import BatonError
from baton.logs import setup_logging
from ops_slurm.asset_jobs import (
    campaign_report_job,
    record_analysis_job,
    record_evaluation_job,
    submit_evaluation_job,
)
from ops_slurm.cancel import cancel_jobs
from resources import build_resources
from schedules import SCHEDULES
from sensors import build_sensors

log = logging.getLogger("baton.definitions")


def build_definitions(config: Config) -> Definitions:
    """The code location as ``config`` sets it: the sensors' intervals and settings, and the
    resources every asset, check and job runs with. The drive's folders are made where they
    are missing (the daemon's start), so the first job finds its log folder."""
    _lay_out(config)
    return Definitions(
        assets=[model, evaluation_job, evaluation_metrics, analysis_job, analysis_report,
                campaign_report],
        asset_checks=[checkpoint_complete],
        jobs=[submit_evaluation_job, record_evaluation_job, record_analysis_job,
              campaign_report_job, cancel_jobs, *BATCH_JOBS],
        sensors=build_sensors(config),
        schedules=SCHEDULES,
        executor=in_process_executor,
        resources=build_resources(config),
    )


def _lay_out(config: Config) -> None:
    """A drive that is missing or cannot be laid out is said loudly but stops nothing: the
    sensors and the UI still load, and each submission refuses with the reason."""
    try:
        config.drive.ensure(*config.drive.top_level())
    except BatonError as exc:
        log.error("%s", exc)


@definitions
def defs() -> Definitions:
    """What Dagster loads: the definitions of baton.yaml ($BATON_CONFIG, else ./baton.yaml)
    and the environment as they are now. Each process that loads them (the daemon's and
    the webserver's code servers, every run) logs as ``logging`` says, from then on."""
    config = load_config()
    setup_logging(config.logging, once=True)
    return build_definitions(config)
