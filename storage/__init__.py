"""MongoDB storage: collection strategies with staging, job registry, event log, history."""
