"""Native model implementations (DiT and its ADM Gaussian-diffusion sampler)."""
