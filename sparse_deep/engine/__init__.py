"""The engine: a network's parameters and plan (:mod:`.model`), the layer
classes that carry out a training step (:mod:`.layers`), the runner that
walks them over a backend (:mod:`.runner`), sampled output layers
(:mod:`.sampled`, :mod:`.sampling`) and the optimizer state (:mod:`.optim`)."""
