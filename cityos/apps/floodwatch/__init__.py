"""Urban flood watch: road flood-depth sensors and rain gauges in real time, quality
checks, alerts, 30-minute nowcasts, event analytics and drainage-pump control."""
