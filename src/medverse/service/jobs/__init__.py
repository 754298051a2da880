"""Jobs: the segmentation queue in the database, its worker and its router."""
