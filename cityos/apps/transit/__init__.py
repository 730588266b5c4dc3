"""Bus operations: GTFS, live positions, arrival predictions, GTFS-realtime, analytics
and driver monitoring."""
