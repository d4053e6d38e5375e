"""Integer codes that name activations and error functions inside kernels.

Kernels cannot take strings, so the engine translates the network's canonical
names (see :mod:`sparse_deep.network.registry`) into these small integers once
per fit. Every backend uses the same table.
"""

LINEAR = 0
SIGMOID = 1
TANH = 2
RELU = 3
LRELU = 4
ELU = 5
SELU = 6
SOFTPLUS = 7
SOFTSIGN = 8
SOFTMAX = 9

ACTIVATION_CODES = {
    "Linear": LINEAR,
    "Sigmoid": SIGMOID,
    "Tanh": TANH,
    "Relu": RELU,
    "LRelu": LRELU,
    "ELU": ELU,
    "SELU": SELU,
    "SoftPlus": SOFTPLUS,
    "SoftSign": SOFTSIGN,
    "SoftMax": SOFTMAX,
}

L1 = 0
L2 = 1
CROSS_ENTROPY = 2
SCALED_MARGINAL_CROSS_ENTROPY = 3
DATA_SCALED_MARGINAL_CROSS_ENTROPY = 4
HINGE = 5
L2_HINGE = 6
# Losses of a sampled output layer (scores of targets and sampled negatives).
SAMPLED_SOFTMAX = 7
COSINE_CONTRASTIVE = 8
BPR = 9

ERROR_CODES = {
    "L1": L1,
    "L2": L2,
    "CrossEntropy": CROSS_ENTROPY,
    "ScaledMarginalCrossEntropy": SCALED_MARGINAL_CROSS_ENTROPY,
    "DataScaledMarginalCrossEntropy": DATA_SCALED_MARGINAL_CROSS_ENTROPY,
    "Hinge": HINGE,
    "L2Hinge": L2_HINGE,
    "SampledSoftmax": SAMPLED_SOFTMAX,
    "CosineContrastive": COSINE_CONTRASTIVE,
    "BPR": BPR,
}

SGD = 0
MOMENTUM = 1
NESTEROV = 2
ADAGRAD = 3
RMSPROP = 4
ADADELTA = 5
ADAM = 6

OPTIMIZER_CODES = {
    "sgd": SGD,
    "momentum": MOMENTUM,
    "nesterov": NESTEROV,
    "adagrad": ADAGRAD,
    "rmsprop": RMSPROP,
    "adadelta": ADADELTA,
    "adam": ADAM,
}
