"""Tests for sparse_deep.network: DSSTNE's JSON network definition language."""

import dataclasses
import json
import os
import pickle

import pytest

from sparse_deep.network import (
    ACTIVATIONS,
    ERROR_FUNCTIONS,
    LAYER_TYPES,
    WEIGHT_INITS,
    DeltaBoost,
    LayerSpec,
    NetworkSpec,
    ScaledMarginalCrossEntropy,
    SparsenessPenalty,
    WeightInit,
    activation_info,
    error_function_info,
    load_network,
    parse_network,
    save_network,
)
from sparse_deep.network import spec as spec_module

# samples/movielens/config.json from DSSTNE, verbatim.
MOVIELENS = """
{
    "Version" : 0.7,
    "Name" : "AE",
    "Kind" : "FeedForward",
    "SparsenessPenalty" : {
        "p" : 0.5,
        "beta" : 2.0
    },

    "ShuffleIndices" : false,

    "Denoising" : {
        "p" : 0.2
    },

    "ScaledMarginalCrossEntropy" : {
        "oneTarget" : 1.0,
        "zeroTarget" : 0.0,
        "oneScale" : 1.0,
        "zeroScale" : 1.0
    },
    "Layers" : [
        { "Name" : "Input", "Kind" : "Input", "N" : "auto", "DataSet" : "gl_input", "Sparse" : true },
        { "Name" : "Hidden", "Kind" : "Hidden", "Type" : "FullyConnected", "N" : 128, "Activation" : "Sigmoid", "Sparse" : true },
        { "Name" : "Output", "Kind" : "Output", "Type" : "FullyConnected", "DataSet" : "gl_output", "N" : "auto", "Activation" : "Sigmoid", "Sparse" : true }
    ],

    "ErrorFunction" : "ScaledMarginalCrossEntropy"
}
"""


def minimal(**top):
    """A three-layer definition; keyword arguments override top-level keys."""
    definition = {"Layers": [{"N": 10}, {"N": 4}, {"N": 3}]}
    definition.update(top)
    return definition


def with_layers(*layers, **top):
    definition = {"Layers": list(layers)}
    definition.update(top)
    return definition


@pytest.fixture
def movielens():
    return parse_network(MOVIELENS)


# ---------------------------------------------------------------- MovieLens


def test_movielens_top_level_values(movielens):
    assert movielens.version == 0.7
    assert movielens.name == "AE"
    assert movielens.kind == "FeedForward"
    assert movielens.error_function == "ScaledMarginalCrossEntropy"
    assert movielens.shuffle_indices is False
    assert movielens.denoising_p == 0.2
    assert movielens.sparseness_penalty == SparsenessPenalty(p=0.5, beta=2.0)
    assert movielens.sparseness_penalty.enabled
    assert movielens.smce == ScaledMarginalCrossEntropy(
        one_target=1.0, zero_target=0.0, one_scale=1.0, zero_scale=1.0)
    # Keys the file leaves out keep DSSTNE's defaults.
    assert movielens.delta_boost == DeltaBoost(1.0, 1.0)
    assert movielens.relu_slope == 1.0


def test_movielens_layers(movielens):
    assert [layer.name for layer in movielens.layers] == ["Input", "Hidden", "Output"]
    inp, hidden, out = movielens.layers
    assert movielens.input_layer is inp and movielens.output_layer is out
    assert movielens.hidden_layers == (hidden,)
    assert (inp.kind, inp.n, inp.dataset, inp.sparse, inp.activation) == (
        "Input", "auto", "gl_input", True, None)
    assert inp.sources == ()
    # Sparse on a Hidden layer switches the sparseness penalty on: keep it.
    assert (hidden.kind, hidden.n, hidden.activation, hidden.sparse) == ("Hidden", 128, "Sigmoid", True)
    assert hidden.sources == ("Input",)
    assert (out.kind, out.n, out.dataset, out.activation) == ("Output", "auto", "gl_output", "Sigmoid")
    assert out.sources == ("Hidden",)
    assert not movielens.is_resolved


def test_movielens_file_loads(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(MOVIELENS)
    assert load_network(path) == parse_network(MOVIELENS)
    assert parse_network(str(path)) == parse_network(MOVIELENS)


# ---------------------------------------------------------------- defaults


def test_network_defaults_match_dsstne():
    spec = parse_network(minimal())
    assert spec.version == 0.9
    assert spec.name == ""
    assert spec.kind == "FeedForward"
    assert spec.error_function == "CrossEntropy"
    assert spec.shuffle_indices is True
    assert spec.sparseness_penalty == SparsenessPenalty(0.0, 0.0)
    assert not spec.sparseness_penalty.enabled
    assert spec.denoising_p == 0.0
    assert spec.delta_boost == DeltaBoost(one=1.0, zero=1.0)
    assert spec.smce == ScaledMarginalCrossEntropy(0.9, 0.1, 1.0, 1.0)
    assert (spec.relu_slope, spec.elu_alpha, spec.selu_lambda) == (1.0, 1.0, 1.050701)
    assert spec.decay == 0.0
    assert spec.extras == {}


def test_layer_defaults_match_dsstne():
    spec = parse_network(minimal())
    # Positional kinds and DSSTNE's default names: kind + index.
    assert [(layer.kind, layer.name) for layer in spec.layers] == [
        ("Input", "Input0"), ("Hidden", "Hidden1"), ("Output", "Output2")]
    hidden = spec.layers[1]
    assert hidden.type == "FullyConnected"
    assert hidden.activation == "Sigmoid"
    assert hidden.p_dropout == 0.0
    assert hidden.weight_init == WeightInit("Xavier", 1.0, 0.0)
    assert hidden.weight_norm == 0.0
    assert hidden.sparse is False
    assert hidden.sources == ("Input0",) and hidden.skips == ()
    assert hidden.sparseness_penalty is None
    assert (hidden.relu_slope, hidden.elu_alpha, hidden.selu_lambda) == (None, None, None)
    assert spec.input_layer.activation is None


def test_python_construction_fills_default_sources():
    spec = NetworkSpec([LayerSpec("in", "Input", 5), LayerSpec("h", "Hidden", 3),
                        LayerSpec("out", "Output", "auto", activation="softmax")])
    assert spec.layer("h").sources == ("in",)
    assert spec.layer("out").sources == ("h",)
    assert spec.layer("out").activation == "SoftMax"
    assert isinstance(spec.layers, tuple)


# ---------------------------------------------------------------- round trips

RICH = {
    "Version": 0.81, "Name": "rich", "Kind": "AutoEncoder", "ErrorFunction": "L2",
    "ShuffleIndices": False, "SparsenessPenalty": {"p": 0.1, "beta": 0.5},
    "Denoising": {"p": 0.3}, "DeltaBoost": {"one": 2.0, "zero": 0.5},
    "ScaledMarginalCrossEntropy": {"oneTarget": 0.8, "zeroTarget": 0.2, "oneScale": 30, "zeroScale": 1},
    "RELUSlope": 0.01, "ELUAlpha": 1.5, "SELULambda": 1.1, "Decay": 0.001,
    "LRN": {"k": 3, "n": 7}, "MaxOut": {"k": 4}, "WeightsData": "weights.nc",
    "Layers": [
        {"Name": "in", "Kind": "Input", "N": 100, "DataSet": "x", "Sparse": True, "pDropout": 0.1},
        {"Name": "h1", "N": 32, "Activation": "LRelu", "Slope": 0.2,
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.5, "Bias": -1.0}, "WeightNorm": 3.0,
         "SparsenessPenalty": {"p": 0.05, "beta": 1.0}, "Sparse": True},
        {"Name": "h2", "N": 32, "Activation": "SELU", "Source": "h1", "ELUAlpha": 1.67,
         "SELULambda": 1.05, "pDropout": 0.5},
        {"Name": "h3", "N": 32, "Activation": "ELU", "Source": ["h1", "h2"], "Skip": "h1"},
        {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "y", "Activation": "Linear",
         "Skip": ["h3"], "WeightInit": {"Scheme": "Constant", "Bias": -10.2}},
    ],
}


@pytest.mark.parametrize("definition", [MOVIELENS, RICH, minimal()], ids=["movielens", "rich", "minimal"])
def test_dict_round_trip(definition):
    spec = parse_network(definition)
    again = parse_network(spec.to_dict())
    assert again == spec
    assert again.to_dict() == spec.to_dict()


def test_to_dict_uses_dsstne_spelling():
    data = parse_network(RICH).to_dict()
    assert set(data) == {
        "Version", "Name", "Kind", "Layers", "ErrorFunction", "SparsenessPenalty", "Denoising",
        "ScaledMarginalCrossEntropy", "ShuffleIndices", "DeltaBoost", "RELUSlope", "ELUAlpha",
        "SELULambda", "Decay", "LocalResponseNormalization", "MaxOut", "WeightsData"}
    assert data["ScaledMarginalCrossEntropy"] == {
        "oneTarget": 0.8, "zeroTarget": 0.2, "oneScale": 30.0, "zeroScale": 1.0}
    assert data["LocalResponseNormalization"] == {"k": 3.0, "n": 7, "alpha": 0.0001, "beta": 0.75}
    h1 = data["Layers"][1]
    assert h1["WeightInit"] == {"Scheme": "Gaussian", "Scale": 0.5, "Bias": -1.0}
    assert h1["RELUSlope"] == 0.2 and h1["pDropout"] == 0.0
    assert h1["SparsenessPenalty"] == {"p": 0.05, "beta": 1.0}
    assert data["Layers"][3]["Source"] == ["h1", "h2"] and data["Layers"][3]["Skip"] == ["h1"]
    # Input layers take no weight keys in DSSTNE, so none are written.
    assert "WeightInit" not in data["Layers"][0] and "Source" not in data["Layers"][0]
    json.dumps(data)  # JSON-ready


def test_json_text_and_file_round_trip(tmp_path):
    spec = parse_network(RICH)
    assert parse_network(spec.to_json()) == spec
    assert parse_network(spec.to_json(indent=None)) == spec
    path = tmp_path / "net.json"
    save_network(spec, path)
    assert load_network(path) == spec
    assert json.loads(path.read_text()) == spec.to_dict()
    assert parse_network(os.fspath(path)) == spec


def test_parse_network_returns_spec_unchanged():
    spec = parse_network(minimal())
    assert parse_network(spec) is spec


def test_pickle_round_trip():
    for spec in (parse_network(MOVIELENS), parse_network(RICH)):
        again = pickle.loads(pickle.dumps(spec))
        assert again == spec
        assert again.layers[1] == spec.layers[1]


def test_specs_are_frozen_values():
    spec = parse_network(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"
    assert hash(spec) == hash(parse_network(minimal()))
    renamed = dataclasses.replace(spec, name="renamed")
    assert renamed.name == "renamed" and renamed != spec


def test_replace_revalidates():
    spec = parse_network(minimal())
    with pytest.raises(ValueError, match=r"Denoising 'p' must be in \[0, 1\), got 1"):
        dataclasses.replace(spec, denoising_p=1.0)


# ---------------------------------------------------------------- case and aliases


def test_keys_are_case_insensitive_at_every_level():
    spec = parse_network({
        "VERSION": 0.8, "errorfunction": "l2", "sparsenesspenalty": {"P": 0.2, "BETA": 1},
        "scaledMARGINALcrossentropy": {"ONETARGET": 0.7},
        "layers": [{"name": "a", "KIND": "input", "n": "AUTO"},
                   {"NAME": "b", "kind": "OUTPUT", "n": 2, "pdropout": 0.25,
                    "weightinit": {"SCHEME": "unit_ball", "scale": 2}}],
    })
    assert spec.version == 0.8 and spec.error_function == "L2"
    assert spec.sparseness_penalty == SparsenessPenalty(0.2, 1.0)
    assert spec.smce.one_target == 0.7
    assert spec.input_layer.n == "auto"
    assert spec.output_layer.p_dropout == 0.25
    assert spec.output_layer.weight_init == WeightInit("UnitBall", 2.0)


def test_key_aliases():
    spec = parse_network({
        "Slope": 0.3, "LRN": {"alpha": 0.5}, "DataScaledMarginalCrossEntropy": {"zeroScale": 2},
        "Layers": [{"N": 4}, {"N": 2, "slope": 0.1}],
    })
    assert spec.relu_slope == 0.3
    assert spec.extras["LocalResponseNormalization"]["alpha"] == 0.5
    assert spec.smce.zero_scale == 2.0
    assert spec.output_layer.relu_slope == 0.1


def test_value_aliases_and_spellings():
    spec = parse_network({"ErrorFunction": "Cross Entropy", "Kind": "auto-encoder",
                          "Layers": [{"N": 4}, {"N": 3, "Activation": "rectified_linear"},
                                     {"N": 2, "Activation": "SOFTMAX"}]})
    assert spec.error_function == "CrossEntropy"
    assert spec.kind == "AutoEncoder"
    assert spec.layers[1].activation == "Relu"
    assert spec.output_layer.activation == "SoftMax"


def test_case_variants_of_one_key_are_rejected():
    with pytest.raises(ValueError, match=r"'Name' is given twice .*'Name' and 'name'"):
        parse_network(minimal(Name="a", name="b"))


def test_exact_duplicate_json_keys_are_rejected():
    with pytest.raises(ValueError, match="'Name' appears twice"):
        parse_network('{"Name": "a", "Name": "b", "Layers": [{"N": 1}, {"N": 1}]}')


# ---------------------------------------------------------------- registries


def test_registry_lookup_normalises_names():
    for spelling in ("Cross Entropy", "cross_entropy", "CROSSENTROPY", "cross-entropy"):
        assert ERROR_FUNCTIONS.canonical(spelling) == "CrossEntropy"
    assert ACTIVATIONS.canonical("LeakyRectifiedLinear") == "LRelu"
    assert ACTIVATIONS.canonical("scaled exponential linear") == "SELU"
    assert "relu" in ACTIVATIONS and "Swish" not in ACTIVATIONS and 3 not in ACTIVATIONS
    assert "ReluMax" not in ACTIVATIONS
    assert WEIGHT_INITS.names == ("Xavier", "CaffeXavier", "Gaussian", "Uniform", "UnitBall",
                                  "Constant", "SELU")


def test_registry_errors_list_canonical_names():
    with pytest.raises(ValueError, match=r"unknown activation 'Swish'; expected one of: Sigmoid, Tanh, "):
        ACTIVATIONS.canonical("Swish")
    with pytest.raises(ValueError, match=r"'ReluMax' is a DSSTNE activation that sparse_deep does "
                                         r"not support yet; supported: Sigmoid"):
        ACTIVATIONS.canonical("ReluMax")
    with pytest.raises(ValueError, match="Pooling' is a DSSTNE layer type"):
        LAYER_TYPES.canonical("pooling")


def test_registry_facts():
    assert activation_info("softmax").elementwise is False
    assert activation_info("Sigmoid").output_range == (0.0, 1.0)
    assert activation_info("Tanh").output_range is None
    assert activation_info("Relu").elementwise is True
    assert error_function_info("CrossEntropy").needs_unit_interval
    assert error_function_info("L2").needs_unit_interval is False
    assert error_function_info("DataScaledMarginalCrossEntropy").allows_softmax is False
    assert error_function_info("ScaledMarginalCrossEntropy").allows_softmax is True


# ---------------------------------------------------------------- resolve


def test_resolve_fills_auto(movielens):
    resolved = movielens.resolve(27278, 27280)
    assert resolved.is_resolved
    assert resolved.input_layer.n == 27278
    assert resolved.output_layer.n == 27280
    assert resolved.layers[1] == movielens.layers[1]
    assert not movielens.is_resolved  # the original is untouched


def test_resolve_accepts_matching_explicit_sizes():
    spec = parse_network(minimal())
    assert spec.is_resolved
    assert spec.resolve(10, 3) == spec


def test_resolve_mismatch_names_layer_and_both_sizes():
    spec = parse_network(minimal())
    with pytest.raises(ValueError, match=r"Input layer 'Input0' declares N=10 but the input data has 12"):
        spec.resolve(12, 3)
    with pytest.raises(ValueError, match=r"Output layer 'Output2' declares N=3 but the output data has 5"):
        spec.resolve(10, 5)


def test_resolve_rejects_bad_sizes(movielens):
    with pytest.raises(ValueError, match="n_input must be a positive integer"):
        movielens.resolve(0, 5)


def test_resolve_checks_skip_sizes():
    spec = parse_network(with_layers({"N": 8}, {"N": 4, "Activation": "Relu"},
                                     {"N": "auto", "Skip": "Hidden1"}))
    assert spec.resolve(8, 4).output_layer.n == 4
    with pytest.raises(ValueError, match="Skip 'Hidden1' has N=4 but this layer has N=5"):
        spec.resolve(8, 5)


def test_layer_lookup():
    spec = parse_network(MOVIELENS)
    assert spec.layer("Hidden").n == 128
    with pytest.raises(ValueError, match="no layer named 'Nope'; layers: Input, Hidden, Output"):
        spec.layer("Nope")


# ---------------------------------------------------------------- errors


TOP_KEYS_LISTED = r"accepted keys: Version, Name, Kind, Layers, ErrorFunction"
LAYER_KEYS_LISTED = r"accepted keys: Name, Kind, Type, N, DataSet"


def test_unknown_top_level_key():
    with pytest.raises(ValueError, match=rf"unknown key 'Optimizer' in the top level.*{TOP_KEYS_LISTED}"):
        parse_network(minimal(Optimizer="Adam"))


@pytest.mark.parametrize("key", ["WeightData", "L1Penalty"])
def test_ldl_txt_keys_are_unknown_as_in_dsstne(key):
    with pytest.raises(ValueError, match=rf"unknown key '{key}'.*{TOP_KEYS_LISTED}"):
        parse_network(minimal(**{key: 1}))


@pytest.mark.parametrize("key", ["Sources", "Transpose", "Foo"])
def test_unknown_layer_key(key):
    definition = with_layers({"N": 3}, {"Name": "h", "N": 2, key: "x"}, {"N": 1})
    with pytest.raises(ValueError, match=rf"unknown key '{key}' in layer 'h' \(index 1\).*{LAYER_KEYS_LISTED}"):
        parse_network(definition)


def test_unknown_key_suggests_close_match():
    with pytest.raises(ValueError, match=r"'Sources' .*did you mean 'Source'\?"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Sources": "Input0"}))


def test_unknown_sub_key():
    with pytest.raises(ValueError, match=r"unknown key 'q' in 'SparsenessPenalty'.*accepted keys: p, beta"):
        parse_network(minimal(SparsenessPenalty={"q": 1}))
    with pytest.raises(ValueError, match=r"unknown key 'Mean' in 'WeightInit' in layer 'Hidden1'.*Scheme, Scale, Bias"):
        parse_network(with_layers({"N": 3}, {"N": 2, "WeightInit": {"Mean": 0}}, {"N": 1}))


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"layer 'Hidden1'.*unknown activation 'Swish'; expected one of: "
                                         r"Sigmoid, Tanh, Linear, Relu"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Activation": "Swish"}, {"N": 1}))


def test_unsupported_dsstne_activation():
    with pytest.raises(ValueError, match=r"'LinearMax' is a DSSTNE activation that sparse_deep does not "
                                         r"support yet; supported: Sigmoid"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Activation": "LinearMax"}, {"N": 1}))


def test_unknown_error_function():
    with pytest.raises(ValueError, match=r"'ErrorFunction'.*unknown error function 'LogLoss'; expected "
                                         r"one of: L1, L2, CrossEntropy"):
        parse_network(minimal(ErrorFunction="LogLoss"))


def test_unknown_weight_init_scheme():
    with pytest.raises(ValueError, match=r"layer 'Hidden1'.*unknown weight initialization scheme 'He'; "
                                         r"expected one of: Xavier, CaffeXavier"):
        parse_network(with_layers({"N": 3}, {"N": 2, "WeightInit": {"Scheme": "He"}}, {"N": 1}))


@pytest.mark.parametrize("layer_type", ["Convolutional", "Pooling"])
def test_unsupported_layer_type(layer_type):
    with pytest.raises(ValueError, match=rf"'{layer_type}' is a DSSTNE layer type that sparse_deep does "
                                         r"not support yet; supported: FullyConnected"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Type": layer_type}, {"N": 1}))


def test_unsupported_target_kind():
    with pytest.raises(ValueError, match="'Target' is a DSSTNE layer kind that sparse_deep does not support yet"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Kind": "Target"}, {"N": 1}))


@pytest.mark.parametrize("key, value", [
    ("Kernel", 3), ("KernelStride", [1, 2]), ("Function", "Max"), ("SharedWeights", {}),
    ("BatchNormalization", True), ("DeltaNorm", 1.5),
])
def test_unsupported_layer_keys(key, value):
    definition = with_layers({"N": 3}, {"Name": "h", "N": 2, key: value}, {"N": 1})
    with pytest.raises(ValueError, match=rf"layer 'h' \(index 1\): '{key}' is a DSSTNE layer key that "
                                         r"is not supported by sparse_deep yet"):
        parse_network(definition)


def test_switched_off_unsupported_keys_are_accepted():
    spec = parse_network(with_layers({"N": 3}, {"N": 2, "BatchNormalization": False, "DeltaNorm": 0}))
    assert spec.output_layer.n == 2


def test_malformed_json_text_reports_line_and_column():
    text = '{\n  "Layers": [\n    {"N": 3},\n    {"N": 2,}\n  ]\n}'
    with pytest.raises(ValueError, match=r"invalid JSON text: .* at line 4, column 13"):
        parse_network(text)


def test_malformed_json_file_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"Layers": [\n{"N": 3}\n{"N": 2}]}')
    with pytest.raises(ValueError, match=r"invalid JSON in .*broken\.json: .* at line 3, column 1"):
        load_network(path)


def test_invalid_file_content_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(minimal(Shuffle=True)))
    with pytest.raises(ValueError, match=r"bad\.json: unknown key 'Shuffle'"):
        load_network(path)


def test_missing_file(tmp_path):
    path = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_network(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        parse_network(str(path))


def test_top_level_must_be_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="must be a JSON object, got a JSON array"):
        load_network(path)
    with pytest.raises(TypeError):
        parse_network(42)


@pytest.mark.parametrize("n, expected", [
    (0, "got 0"), (-5, "got -5"), (2.5, "got 2.5"), ("many", "got 'many'"), (True, "got True"),
])
def test_bad_n(n, expected):
    with pytest.raises(ValueError, match=rf"layer 'Hidden1': 'N' must be a positive integer or \"auto\", {expected}"):
        parse_network(with_layers({"N": 3}, {"N": n}, {"N": 1}))


def test_multidimensional_n_is_not_supported():
    with pytest.raises(ValueError, match="'N' is an array .* not supported by sparse_deep yet"):
        parse_network(with_layers({"N": [28, 28]}, {"N": 1}))


def test_missing_n():
    with pytest.raises(ValueError, match=r"layer 'Hidden1' \(index 1\) has no 'N'"):
        parse_network(with_layers({"N": 3}, {}, {"N": 1}))


def test_auto_on_hidden_layer():
    with pytest.raises(ValueError, match=r"layer 'h': 'N' is \"auto\", which is only allowed on Input and "
                                         r"Output layers"):
        parse_network(with_layers({"N": 3}, {"Name": "h", "N": "auto"}, {"N": 1}))


def test_duplicate_layer_names():
    with pytest.raises(ValueError, match=r"duplicate layer name 'x' \(layers 1 and 2\)"):
        parse_network(with_layers({"N": 3}, {"Name": "x", "N": 2}, {"Name": "x", "N": 1}))


def test_default_name_clashing_with_explicit_name():
    with pytest.raises(ValueError, match="duplicate layer name 'Hidden1'"):
        parse_network(with_layers({"N": 3, "Name": "Hidden1"}, {"N": 2}, {"N": 1}))


def test_forward_source_reference():
    definition = with_layers({"N": 3}, {"Name": "a", "N": 2, "Source": "b"}, {"Name": "b", "N": 2},
                             {"N": 1})
    with pytest.raises(ValueError, match=r"layer 'a' \(index 1\): Source 'b' is not defined before this "
                                         r"layer .*earlier layers \(Input0\)"):
        parse_network(definition)


def test_self_reference_is_a_forward_reference():
    with pytest.raises(ValueError, match="Source 'h' is not defined before this layer"):
        parse_network(with_layers({"N": 3}, {"Name": "h", "N": 2, "Source": "h"}, {"N": 1}))


def test_unknown_source_and_skip():
    with pytest.raises(ValueError, match=r"Source 'ghost' is not a layer of this network; earlier layers: Input0"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Source": ["ghost"]}, {"N": 1}))
    with pytest.raises(ValueError, match=r"Skip 'ghost' is not a layer"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Skip": "ghost"}, {"N": 1}))


def test_output_layer_cannot_be_a_source():
    definition = with_layers({"N": 3}, {"Name": "out", "Kind": "Output", "N": 2},
                             {"Name": "h", "Kind": "Hidden", "N": 2})
    with pytest.raises(ValueError, match="Source 'out' is the Output layer, which cannot feed other layers"):
        parse_network(definition)


def test_input_layer_takes_no_source_or_activation():
    with pytest.raises(ValueError, match=r"layer 'Input0': 'Activation' is not allowed on Input layers"):
        parse_network(with_layers({"N": 3, "Activation": "Relu"}, {"N": 1}))
    with pytest.raises(ValueError, match=r"'Source' is not allowed on Input layers"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Kind": "Input", "Source": "Input0"}, {"N": 1}))


def test_layer_keys_restricted_by_kind():
    with pytest.raises(ValueError, match="'DataSet' is not allowed on Hidden layers"):
        parse_network(with_layers({"N": 3}, {"N": 2, "DataSet": "d"}, {"N": 1}))
    with pytest.raises(ValueError, match="'SparsenessPenalty' is not allowed on Output layers"):
        parse_network(with_layers({"N": 3}, {"N": 2, "SparsenessPenalty": {"beta": 1}}))


@pytest.mark.parametrize("p", [1.0, -0.1, 2])
def test_p_dropout_out_of_range(p):
    with pytest.raises(ValueError, match=rf"layer 'Hidden1': 'pDropout' must be in \[0, 1\), got {p:g}"):
        parse_network(with_layers({"N": 3}, {"N": 2, "pDropout": p}, {"N": 1}))


def test_denoising_and_sparseness_ranges():
    with pytest.raises(ValueError, match=r"Denoising 'p' must be in \[0, 1\), got 1"):
        parse_network(minimal(Denoising={"p": 1.0}))
    with pytest.raises(ValueError, match=r"SparsenessPenalty 'p' must be in \[0, 1\], got 1.5"):
        parse_network(minimal(SparsenessPenalty={"p": 1.5}))
    with pytest.raises(ValueError, match=r"SparsenessPenalty 'beta' must be >= 0, got -1"):
        parse_network(minimal(SparsenessPenalty={"beta": -1}))


def test_value_types_are_checked():
    with pytest.raises(ValueError, match=r"'ShuffleIndices' must be true or false, got 'no'"):
        parse_network(minimal(ShuffleIndices="no"))
    with pytest.raises(ValueError, match=r"ScaledMarginalCrossEntropy 'oneScale' must be a finite number"):
        parse_network(minimal(ScaledMarginalCrossEntropy={"oneScale": float("nan")}))
    with pytest.raises(ValueError, match=r"'Version' must be a number, got '0.8'"):
        parse_network(minimal(Version="0.8"))
    with pytest.raises(ValueError, match=r"'Sparse' must be true or false, got 1"):
        parse_network(with_layers({"N": 3, "Sparse": 1}, {"N": 1}))
    with pytest.raises(ValueError, match=r"'SparsenessPenalty' in the top level .* must be a JSON object"):
        parse_network(minimal(SparsenessPenalty=0.5))


def test_version_too_old():
    with pytest.raises(ValueError, match=r"'Version' must be at least 0.7, got 0.6"):
        parse_network(minimal(Version=0.6))


def test_layers_must_be_a_non_empty_array():
    with pytest.raises(ValueError, match="no 'Layers' key"):
        parse_network({"Name": "x"})
    with pytest.raises(ValueError, match="'Layers' is empty"):
        parse_network({"Layers": []})
    with pytest.raises(ValueError, match="'Layers' must be an array of layer objects, got a JSON object"):
        parse_network({"Layers": {"N": 3}})
    with pytest.raises(ValueError, match="layer 1 must be a JSON object, got 5"):
        parse_network({"Layers": [{"N": 3}, 5]})


def test_cross_entropy_with_tanh_output():
    definition = with_layers({"N": 3}, {"Name": "out", "N": 2, "Activation": "Tanh"})
    with pytest.raises(ValueError, match=r"ErrorFunction 'CrossEntropy' needs outputs in \(0, 1\), but the "
                                         r"Output layer 'out' has activation 'Tanh'; use Sigmoid or SoftMax"):
        parse_network(definition)


def test_tanh_output_is_fine_with_l2():
    spec = parse_network(with_layers({"N": 3}, {"N": 2, "Activation": "Tanh"}, ErrorFunction="L2"))
    assert spec.output_layer.activation == "Tanh"


def test_data_scaled_smce_rejects_softmax():
    definition = with_layers({"N": 3}, {"N": 2, "Activation": "SoftMax"},
                             ErrorFunction="DataScaledMarginalCrossEntropy")
    with pytest.raises(ValueError, match=r"'DataScaledMarginalCrossEntropy' cannot be used with a SoftMax Output"):
        parse_network(definition)


def test_softmax_only_on_output_layer():
    with pytest.raises(ValueError, match="SoftMax activation is only allowed on the Output layer"):
        parse_network(with_layers({"N": 3}, {"N": 2, "Activation": "SoftMax"}, {"N": 1}))


def test_two_output_layers():
    definition = with_layers({"N": 3}, {"Name": "o1", "Kind": "Output", "N": 2},
                             {"Name": "o2", "Source": "Input0", "N": 1})
    with pytest.raises(ValueError, match=r"found 2 Output layers: 'o1', 'o2'.*one input and one output data set"):
        parse_network(definition)


def test_two_input_layers():
    with pytest.raises(ValueError, match="found 2 Input layers"):
        parse_network(with_layers({"N": 3}, {"N": 3, "Kind": "Input"}, {"N": 1}))


def test_first_layer_must_have_something_to_read():
    with pytest.raises(ValueError, match="no 'Source' and no earlier layer"):
        parse_network(with_layers({"N": 3, "Kind": "Hidden"}, {"N": 3, "Kind": "Input"}, {"N": 1}))


def test_extras_are_validated():
    with pytest.raises(ValueError, match=r"MaxOut 'k' must be a positive integer, got 0"):
        parse_network(minimal(MaxOut={"k": 0}))
    with pytest.raises(ValueError, match=r"unknown key 'm' in 'LocalResponseNormalization'"):
        parse_network(minimal(LRN={"m": 1}))
    with pytest.raises(ValueError, match=r"'WeightsData' must be a string"):
        parse_network(minimal(WeightsData=3))


def test_python_constructed_specs_are_validated():
    with pytest.raises(ValueError, match="WeightInit 'Scale' must be a number"):
        WeightInit(scale="big")
    with pytest.raises(ValueError, match=r"ScaledMarginalCrossEntropy 'oneTarget' must be in \[0, 1\]"):
        ScaledMarginalCrossEntropy(one_target=2)
    with pytest.raises(ValueError, match=r"DeltaBoost 'zero' must be >= 0"):
        DeltaBoost(zero=-1)
    with pytest.raises(ValueError, match="'WeightInit' is not allowed on Input layers"):
        LayerSpec("in", "Input", 3, weight_init=WeightInit("Gaussian"))
    with pytest.raises(ValueError, match=r"layers\[1\] must be a LayerSpec"):
        NetworkSpec([LayerSpec("in", "Input", 3), {"N": 2}])


# ---------------------------------------------------------------- saving


def test_save_overwrites_existing_file(tmp_path):
    path = tmp_path / "net.json"
    path.write_text("old")
    save_network(parse_network(MOVIELENS), path)
    assert load_network(path) == parse_network(MOVIELENS)
    assert os.listdir(tmp_path) == ["net.json"]


def test_save_accepts_a_dict(tmp_path):
    path = tmp_path / "net.json"
    save_network(minimal(), path)
    assert load_network(path) == parse_network(minimal())


def failing(*args, **kwargs):
    raise OSError("disk full")


@pytest.mark.parametrize("target", ["dump", "replace"])
def test_save_failure_leaves_no_files(tmp_path, monkeypatch, target):
    module = spec_module.json if target == "dump" else spec_module.os
    monkeypatch.setattr(module, target, failing)
    path = tmp_path / "net.json"
    with pytest.raises(OSError, match="disk full"):
        save_network(parse_network(MOVIELENS), path)
    assert os.listdir(tmp_path) == []


def test_save_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.json"
    path.write_text("old")
    monkeypatch.setattr(spec_module.json, "dump", failing)
    with pytest.raises(OSError):
        save_network(parse_network(MOVIELENS), path)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["net.json"]
