"""Network factory, losses, checkpoint format and export."""
