"""Looking inside networks: training diagnostics (gradient flow, activation statistics, dead
units, weight/update norms, non-finite detection), attribution (Grad-CAM, saliency, integrated
gradients), attention maps, embeddings, and debugging tools. One concept per module; import
from the module that defines what you need."""
