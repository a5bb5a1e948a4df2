"""Sensors: signals (training, evaluation, analysis), the Slurm job tracker and the
supervisor. Each is built from baton's loaded configuration (its interval is a decorator
argument): ``build_sensors(config)``."""

from dagster import SensorDefinition

from baton.config import Config
from sensors.signal_sensors import build_signal_sensors
from sensors.status_sensor import build_status_sensor
from sensors.supervision_sensor import build_supervisor
from sensors.tracker import build_tracker


def build_sensors(config: Config) -> list[SensorDefinition]:
    """Every sensor of the code location, as ``config`` sets them."""
    return [*build_signal_sensors(config), build_tracker(config), build_status_sensor(config),
            build_supervisor(config)]
