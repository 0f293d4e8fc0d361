"""Detection post-processing for a deployment (numpy only): ``from kerastk.deploy.detection import postprocess``.

The box arithmetic lives on kerastk's ground floor, :mod:`kerastk.core.boxes` (the layers, the metrics and the
data use it too); this module keeps the deployment-side names.
"""
from kerastk.core.boxes import *  # noqa: F401,F403
from kerastk.core.boxes import __all__  # noqa: F401
