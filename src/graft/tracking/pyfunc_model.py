"""The code MLflow runs to build a graft pyfunc model (``mlflow.models.set_model``)."""

import mlflow

from graft.tracking.pyfunc import GraftPyfunc

mlflow.models.set_model(GraftPyfunc())
