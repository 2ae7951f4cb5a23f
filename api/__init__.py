"""The model API: serves the artifact and model card that the pipeline's export stage writes."""
