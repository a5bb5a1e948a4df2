"""Analysis: DuckDB over the metrics Parquet -> statistics, figures, tables, one report."""
