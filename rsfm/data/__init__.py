"""The one data layer: GeoTIFF datasets, sampling, normalisation and the synthetic world."""
