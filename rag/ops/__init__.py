"""The index over time and the watch on it: scheduler, triggers, metrics, retention, liveness."""
