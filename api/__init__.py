"""The model API: serves the artifact and model card that the pipeline's export stage writes."""

from api.multiprocess import prepare

# Before any module imports prometheus_client, which decides at import where values live.
prepare()
