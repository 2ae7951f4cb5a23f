"""The DVC pipeline stages: ingest -> eda and preprocess -> tune -> evaluate -> export."""
