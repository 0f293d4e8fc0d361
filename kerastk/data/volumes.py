"""(in progress)"""


def load_volumes(seed, **kwargs):
    raise NotImplementedError("volumes: in progress")
