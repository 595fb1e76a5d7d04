"""The control plane's view of the traffic: one Prometheus endpoint, spans, the dashboard."""
