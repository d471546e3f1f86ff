"""Sections 1-2 of the assignment: the 3-2-1 network, its forward pass by hand, losses, gradients and descent.

The public names are re-exported by `mlplab` itself (`mlplab.forward`, `mlplab.backward`, ...); the modules
here import one another by their full paths, so this file stays empty of imports.
"""
