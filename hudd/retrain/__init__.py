"""Retraining (Steps 6-7): which images to train on, the one training loop, Model Doctor, the statistics comparing methods."""
