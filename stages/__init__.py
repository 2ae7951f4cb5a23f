"""The DVC pipeline stages: ingest -> preprocess -> tune -> evaluate -> export."""
