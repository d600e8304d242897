"""nbinpaint: diffusion inpainting in the notebook, over one shared diffusers pipeline manager."""

__version__ = "0.1.0"
