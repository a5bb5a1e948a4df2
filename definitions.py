"""The one Dagster code location of baton: assets, checks, sensors, jobs and resources.

Every run is short (it submits, records or checks, then returns), so its steps run in the
run's own process: no step worker process to start per step, which on a loaded head node
is most of a run's cost."""

from dagster import Definitions, in_process_executor

from assets.campaign import campaign_report
from assets.checks import checkpoint_complete
from assets.experiment import (
    analysis_job,
    analysis_report,
    evaluation_job,
    evaluation_metrics,
    model,
)
from ops_slurm.asset_jobs import (
    campaign_report_job,
    record_analysis_job,
    record_evaluation_job,
    submit_evaluation_job,
)
from ops_slurm.cancel import cancel_jobs
from resources import LedgerResource, MLflowResource, SharedDriveResource, SlurmResource
from sensors.signal_sensors import analysis_sensor, evaluation_sensor, training_sensor
from sensors.status_sensor import status_reports
from sensors.supervision_sensor import supervisor
from sensors.tracker import slurm_tracker

defs = Definitions(
    assets=[model, evaluation_job, evaluation_metrics, analysis_job, analysis_report,
            campaign_report],
    asset_checks=[checkpoint_complete],
    jobs=[submit_evaluation_job, record_evaluation_job, record_analysis_job,
          campaign_report_job, cancel_jobs],
    sensors=[training_sensor, evaluation_sensor, analysis_sensor, slurm_tracker,
             status_reports, supervisor],
    executor=in_process_executor,
    resources={
        "slurm": SlurmResource(),
        "ledger": LedgerResource(),
        "drive": SharedDriveResource(),
        "mlflow": MLflowResource(),
    },
)
