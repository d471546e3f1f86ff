"""MNIST with an MLP: IDX data, the assignment's config, a fast trainer, experiments and tracking."""
