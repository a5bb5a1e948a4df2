"""The asset graph: model -> evaluation_job -> evaluation_metrics -> analysis_job ->
analysis_report, and campaign_report joining a campaign's experiments."""
