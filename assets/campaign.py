"""campaign_report: one table over every experiment of a campaign, once all are analysed."""


import csv
import json

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.experiment import GROUP, analysis_report
from assets.partitions import campaigns
from baton.analyze.summary import campaign_table
from baton.fsio import atomic_path, atomic_write
from resources import LedgerResource, SharedDriveResource


@asset(partitions_def=campaigns, group_name=GROUP, kinds={"csv"},
       deps=[AssetDep(analysis_report, partition_mapping=AllPartitionMapping())],
       description="Joins every experiment of a campaign: key metrics side by side. Recorded "
                   "when every experiment of the campaign has its analysis report.")
def campaign_report(context: AssetExecutionContext, ledger: LedgerResource,
                    drive: SharedDriveResource) -> MaterializeResult:
    campaign = context.partition_key
    layout = drive.layout()
    exps = ledger.ledger().campaign_experiments(campaign)
    columns, rows = campaign_table(layout, exps)
    folder = layout.analysis / "campaigns" / campaign
    with atomic_path(folder / "summary.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(folder / "summary.json", json.dumps(rows, indent=2).encode())
    table = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n" + "\n".join(
        "| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows)
    return MaterializeResult(metadata={
        "experiments": len(exps), "summary": MetadataValue.path(str(folder / "summary.csv")),
        "table": MetadataValue.md(table)})
