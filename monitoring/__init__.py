"""Inference monitoring: the drift and performance rules and the reports that apply them to the
prediction log; Prometheus, Grafana and alert configuration beside them."""
