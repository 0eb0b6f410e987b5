"""Backend-specific kernels: XLA:CPU-fast pooling, input convolution and inner loops; the same
mathematics as the generic ops, chosen per platform."""
