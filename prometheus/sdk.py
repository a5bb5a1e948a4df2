"""Grafana's builder library (grafana-foundation-sdk), imported in one place: the classic
(v1) dashboard JSON is what Grafana's file provisioning loads, and the SDK warns on import
that its v2 (dynamic dashboards, behind feature flags) is preferred."""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
    from grafana_foundation_sdk.builders.common import (
        ReduceDataOptions,
        VizLegendOptions,
        VizTooltipOptions,
    )
    from grafana_foundation_sdk.builders.dashboard import (
        Dashboard,
        FieldColor,
        QueryVariable,
        Row,
        ThresholdsConfig,
    )
    from grafana_foundation_sdk.builders.prometheus import Dataquery
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import dashboard as dm
    from grafana_foundation_sdk.models.common import (
        BigValueColorMode,
        BigValueGraphMode,
        TooltipDisplayMode,
    )
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

__all__ = ["BigValueColorMode", "BigValueGraphMode", "Dashboard", "Dataquery", "FieldColor",
           "JSONEncoder", "PromQueryFormat", "QueryVariable", "ReduceDataOptions", "Row",
           "ThresholdsConfig", "TooltipDisplayMode", "VizLegendOptions", "VizTooltipOptions",
           "bargauge", "dm", "register_default_plugins", "stat", "table", "timeseries"]
