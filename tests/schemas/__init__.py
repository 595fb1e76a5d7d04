"""Schemas the export tests validate against: Istio's published CRDs (data) and a validator."""
