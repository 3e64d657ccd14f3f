"""her2mri: HER2 status prediction from breast DCE-MRI."""

__version__ = "0.1.0"
