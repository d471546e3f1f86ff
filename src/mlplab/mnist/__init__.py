"""MNIST with an MLP: IDX data, the seed's config, a fast trainer, experiments and tracking."""
