"""Blocks shared by model families: spectral embedding, heads, LoRA, diffusion, references."""
