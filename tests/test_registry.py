import pytest

import kerastk

FIRST_FAMILIES = {"perceptron", "linear_regression", "logistic_regression", "mlp", "mnist_cnn", "lenet5"}


def test_list_models_has_first_families_and_filters():
    names = kerastk.list_models()
    assert FIRST_FAMILIES <= set(names)
    assert names == sorted(names)
    assert kerastk.list_models("l*") == ["lenet5", "linear_regression", "logistic_regression", "lstm_classifier"]
    assert kerastk.list_models("nothing*") == []


def test_lenet5_has_exactly_44426_parameters():
    model = kerastk.create_model("lenet5")
    assert model.count_params() == 44_426
    assert kerastk.model_info("lenet5")["reference_params"] == 44_426
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("AveragePooling2D") == 2 and kinds.count("Conv2D") == 2


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(input_shape=(4,), num_classes=3, depth=1, width=8), 4 * 8 + 8 + 8 * 3 + 3),
        (dict(input_shape=(2,), num_classes=1, depth=2, width=[5, 3]), 2 * 5 + 5 + 5 * 3 + 3 + 3 + 1),
        # BatchNorm: the dense drops its bias, BN adds gamma, beta, moving mean and variance
        (dict(input_shape=(4,), num_classes=2, depth=1, width=8, batchnorm=True), 4 * 8 + 4 * 8 + 8 * 2 + 2),
    ],
)
def test_mlp_parameter_counts(kwargs, expected):
    assert kerastk.create_model("mlp", **kwargs).count_params() == expected


def test_mlp_options_build_the_layers_asked_for():
    model = kerastk.create_model("mlp", depth=3, width=16, activation="elu", dropout=0.3, batchnorm=True)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Dense") == 4 and kinds.count("BatchNormalization") == 3 and kinds.count("Dropout") == 3
    assert model.get_layer("hidden2_elu").get_config()["activation"] == "elu"


def test_linear_models_shapes_and_counts():
    assert kerastk.create_model("perceptron").count_params() == 3
    assert kerastk.create_model("linear_regression").count_params() == 14
    assert kerastk.create_model("logistic_regression", input_shape=(4,), num_classes=3).count_params() == 15
    binary = kerastk.create_model("logistic_regression", input_shape=(30,), num_classes=2)
    assert binary.output_shape == (None, 1)


def test_unknown_model_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Unknown model 'lenet'.*lenet5"):
        kerastk.create_model("lenet")
    with pytest.raises(ValueError, match=r"Unknown model"):
        kerastk.model_info("resnet9000")


def test_bad_kwargs_name_the_argument():
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) depht"):
        kerastk.create_model("mlp", depht=3)
    with pytest.raises(ValueError, match=r"depth"):
        kerastk.create_model("mlp", depth=-1)
    with pytest.raises(ValueError, match=r"width"):
        kerastk.create_model("mlp", depth=2, width=[8])
    with pytest.raises(ValueError, match=r"activation"):
        kerastk.create_model("mlp", activation="relu6x")
    with pytest.raises(ValueError, match=r"dropout"):
        kerastk.create_model("mlp", dropout=1.5)
    with pytest.raises(ValueError, match=r"at least 16x16.*\(8, 8, 1\)"):
        kerastk.create_model("lenet5", input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match=r"pooling"):
        kerastk.create_model("lenet5", include_top=False, pooling="mean")
    with pytest.raises(ValueError, match=r"num_classes"):
        kerastk.create_model("mnist_cnn", num_classes=0)


def test_headless_lenet5_pools_features():
    model = kerastk.create_model("lenet5", include_top=False, pooling="avg")
    assert model.output_shape == (None, 16)
    assert kerastk.create_model("lenet5", include_top=False).output_shape == (None, 4, 4, 16)


def test_model_info_is_a_copy_with_metadata():
    info = kerastk.model_info("mlp")
    assert info["family"] == "mlp" and info["defaults"]["depth"] == 2
    info["family"] = "changed"
    assert kerastk.model_info("mlp")["family"] == "mlp"
