"""The roof: the one place that wires sensors/, vision/ and cloud_sync/ onto the edge floor."""
