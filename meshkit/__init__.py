"""meshkit: a service mesh for a laptop and a test suite."""
