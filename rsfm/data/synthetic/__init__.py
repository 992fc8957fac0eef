"""The embedded default world: seeded, georeferenced synthetic scenes of every sensor."""
