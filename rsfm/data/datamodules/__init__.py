"""Lightning datamodules, one per objective, on a shared base."""
