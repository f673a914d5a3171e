"""Jupyter kernels that run inside compute sessions (see ``provisioner``)."""
