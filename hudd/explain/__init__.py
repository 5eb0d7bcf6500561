"""Explaining the model: LRP heatmaps of every layer (lrp/) and feature vectors of images (features)."""
