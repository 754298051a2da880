"""What the browser viewer loads besides job results: the image as NIfTI, label colours."""
