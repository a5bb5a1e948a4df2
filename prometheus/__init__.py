"""Prometheus: alert and recording rules (generated from one table of thresholds), their
promtool tests, and the Grafana dashboards."""
