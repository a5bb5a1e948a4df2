"""The asset jobs the sensors launch (each a short run that submits or records, then
returns). Each is partitioned as its assets are (Dagster infers it from the selection):
`experiments`, or `campaigns` for the campaign report."""


from dagster import AssetSelection, define_asset_job

submit_evaluation_job = define_asset_job(
    "submit_evaluation", selection=AssetSelection.assets("evaluation_job"),
    description="Render and submit an experiment's evaluation (one Slurm task per checkpoint).")

record_evaluation_job = define_asset_job(
    "record_evaluation", selection=AssetSelection.assets("evaluation_metrics", "analysis_job"),
    description="Record the finished evaluation's metrics (DuckDB summary and checks) and, if "
                "it produced any, submit the analysis.")

record_analysis_job = define_asset_job(
    "record_analysis", selection=AssetSelection.assets("analysis_report"),
    description="Record the finished analysis and its report.")

campaign_report_job = define_asset_job(
    "campaign_report_job", selection=AssetSelection.assets("campaign_report"),
    description="Join every experiment of a campaign.")
