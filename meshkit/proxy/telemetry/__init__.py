"""What a sidecar reports: the access log, the call log, metrics and the admin listener's answers."""
