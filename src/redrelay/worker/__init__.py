"""The worker: consumer threads, leases and heartbeats, process supervision and signals."""
