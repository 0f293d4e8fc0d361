"""Every model family: importing this module registers each builder in kerastk.models.catalog."""
from kerastk.backend import check_backend_env

check_backend_env()  # the families import keras: a bad KERAS_BACKEND gets kerastk's message, not Keras's
from kerastk.models import (  # noqa: F401, E402  (importing a family registers its builders)
    alexnet,
    captioner,
    convnext,
    densenet,
    detection,
    embedding,
    googlenet,
    lenet,
    linear,
    mlp,
    mobilenet,
    recurrent,
    resnet,
    resnet_cifar,
    segmentation,
    seq2seq,
    transformer,
    unet,
    vae,
    vgg,
    volumetric,
    xception,
)
