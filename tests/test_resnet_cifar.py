import keras
import pytest

import kerastk


def test_resnet20_matches_the_paper():
    model = kerastk.create_model("resnet20")
    # 19 3x3 convs + 2 projection shortcuts + BN + classifier; the paper's 0.27 M uses identity (option A)
    assert model.count_params() == 274_826
    assert model.count_params() == pytest.approx(kerastk.model_info("resnet20")["reference_params"], rel=0.02)
    assert kerastk.count_flops(model) == pytest.approx(41e6, rel=0.05)  # He et al.: ~41 M FLOPs (mult-adds)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 19 + 2
    assert model.get_layer("conv4_block1_2_conv").output.shape[1:] == (8, 8, 64)


def test_cifar_resnet_depth_and_options():
    from kerastk.models.resnet_cifar import CifarResNet

    assert len([la for la in CifarResNet(32).layers if isinstance(la, keras.layers.Add)]) == 15
    with pytest.raises(ValueError, match=r"6n \+ 2.*depth=21"):
        CifarResNet(21)
    with_sd = kerastk.create_model("resnet20", stochastic_depth_rate=0.2)
    rates = [la.rate for la in with_sd.layers if type(la).__name__ == "StochasticDepth"]
    assert len(rates) == 9 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)
    headless = kerastk.create_model("resnet20", include_top=False, pooling="avg")
    assert headless.output_shape == (None, 64)
