"""Every decision the sidecar makes per request (route match, split, balancing, retries, budgets, breakers,
outlier detection, faults, rewrites, response flags): pure objects with an injected clock, no event loop."""
