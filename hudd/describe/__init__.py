"""Say in words what a cluster's images have in common (Step 2b): conditions on parameters and image properties."""
