"""shapnas: retrofit neural architecture search for pre-trained 2D U-Nets with Shapley-guided pruning.

Reference implementation of Benedykciuk, Denkowski, Wójcik, *Improving medical image segmentation in
pre-trained U-Nets using Shapley-guided pruning of adaptive skip-connection modules*, Sci. Rep. (2026).
"""

__version__ = "0.1.0"
