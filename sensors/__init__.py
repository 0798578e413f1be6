"""Sensor ingest: MQTT payload decoding, calibration, aggregation and standards rules."""
