"""hudd: explain and fix the failures of image DNNs with heatmap-based unsupervised debugging.

Implements HUDD (Fahmy, Pastore, Bagherzadeh, Briand, "Supporting DNN Safety Analysis and
Retraining through Heatmap-based Unsupervised Learning"). See README.md for the commands.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
